"""``driver: VolumeSnapshotter``: CSI VolumeSnapshots of a target's claims, and claims restored from them.

No restic, no Repository, no agent: for each BackupSession of a VolumeSnapshotter configuration the
operator itself creates one VolumeSnapshot per claim of the target, waits for them, writes the session's
status and applies the retention policy (:mod:`.backup`); a VolumeSnapshotter RestoreSession's
``volumeClaimTemplates`` become claims whose ``dataSource`` is a VolumeSnapshot (:mod:`.restore`). The
pure parts (which claims, which names, what to keep, what the status says) live in their own modules.
"""
