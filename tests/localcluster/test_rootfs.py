"""The image root made of a debootstrap tree: what the slim image keeps and drops (pure filesystem)."""

from __future__ import annotations

from pathlib import Path

from stashlet.localcluster.rootfs import _finish_tree


def debootstrapped(tree: Path) -> None:
    """The parts of a fresh minbase tree that :func:`_finish_tree` touches, with a doc folder that is a
    symlink to another package's (Debian's ``libstdc++6 -> gcc-14-base``)."""
    folders = ("etc/apt/sources.list.d", "etc/dpkg/dpkg.cfg.d", "etc/apt/apt.conf.d", "dev/pts", "var/log")
    for folder in folders:
        (tree / folder).mkdir(parents=True)
    (tree / "etc/apt/sources.list").write_text("deb http://deb.debian.org/debian trixie main\n")
    (tree / "var/log/dpkg.log").write_text("installed\n")
    (tree / "dev/null").write_text("")
    for name in ("etc/resolv.conf", "etc/hostname"):
        (tree / name).write_text("host\n")
    base = tree / "usr/share/doc/gcc-14-base"
    base.mkdir(parents=True)
    for name in ("copyright", "changelog.Debian.gz", "README"):
        (base / name).write_text(name)
    (tree / "usr/share/doc/libstdc++6").symlink_to("gcc-14-base")
    (tree / "usr/share/man/man1").mkdir(parents=True)
    (tree / "usr/share/man/man1/ls.1.gz").write_text("ls")


def test_a_symlinked_doc_folder_is_slimmed_once_through_its_target(tmp_path: Path) -> None:
    debootstrapped(tmp_path)

    _finish_tree(tmp_path, "Types: deb\n", slim=True)

    assert sorted(p.name for p in (tmp_path / "usr/share/doc/gcc-14-base").iterdir()) == ["copyright"]
    assert (tmp_path / "usr/share/doc/libstdc++6").is_symlink()
    assert (tmp_path / "usr/share/doc/libstdc++6/copyright").read_text() == "copyright"
    assert list((tmp_path / "usr/share/man").iterdir()) == []
    assert list((tmp_path / "dev").iterdir()) == []
    assert list((tmp_path / "var/log").iterdir()) == []
    assert not (tmp_path / "etc/resolv.conf").exists() and not (tmp_path / "etc/hostname").exists()
    assert (tmp_path / "etc/apt/sources.list.d/debian.sources").read_text() == "Types: deb\n"
    assert (tmp_path / "etc/dpkg/dpkg.cfg.d/docker").exists()


def test_the_full_image_keeps_its_documentation(tmp_path: Path) -> None:
    debootstrapped(tmp_path)

    _finish_tree(tmp_path, "Types: deb\n", slim=False)

    assert len(list((tmp_path / "usr/share/doc/gcc-14-base").iterdir())) == 3
    assert (tmp_path / "usr/share/man/man1/ls.1.gz").exists()
