"""Condition types and reasons, spelt exactly as Stash v1beta1 writes them.

``Condition.type`` stays a plain string on the wire (objects may carry types this code does not know);
these enums are the vocabulary stashlet itself writes and looks for.
"""

from enum import StrEnum


class ConditionType(StrEnum):
    """Condition types of BackupConfiguration, BackupSession and RestoreSession."""

    # Set by the operator on BackupConfiguration and RestoreSession.
    REPOSITORY_FOUND = "RepositoryFound"
    BACKEND_SECRET_FOUND = "BackendSecretFound"  # noqa: S105 - a condition name, not a secret
    VALIDATION_PASSED = "ValidationPassed"
    # BackupConfiguration.
    BACKUP_TARGET_FOUND = "BackupTargetFound"
    STASH_SIDECAR_INJECTED = "StashSidecarInjected"
    CRON_JOB_CREATED = "CronJobCreated"
    # stashlet's own: whether the workload runs as an account of its own (never what Ready waits for).
    DEDICATED_SERVICE_ACCOUNT = "DedicatedServiceAccount"
    # BackupSession (session-wide and per target).
    BACKUP_SKIPPED = "BackupSkipped"
    BACKUP_HISTORY_CLEANED = "BackupHistoryCleaned"
    BACKUP_EXECUTOR_ENSURED = "BackupExecutorEnsured"
    BACKEND_REPOSITORY_INITIALIZED = "BackendRepositoryInitialized"
    RETENTION_POLICY_APPLIED = "RetentionPolicyApplied"
    REPOSITORY_INTEGRITY_VERIFIED = "RepositoryIntegrityVerified"
    REPOSITORY_METRICS_PUSHED = "RepositoryMetricsPushed"
    PRE_BACKUP_HOOK_EXECUTION_SUCCEEDED = "PreBackupHookExecutionSucceeded"
    POST_BACKUP_HOOK_EXECUTION_SUCCEEDED = "PostBackupHookExecutionSucceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    METRICS_PUSHED = "MetricsPushed"
    # stashlet's own: whether restic reaches the backend (written once restic had to retry it).
    BACKEND_REACHABLE = "BackendReachable"
    # stashlet's own, on a Repository: how the last restore drill of a configuration backing up into it went.
    RESTORE_DRILL_SUCCEEDED = "RestoreDrillSucceeded"
    # RestoreSession.
    RESTORE_TARGET_FOUND = "RestoreTargetFound"
    STASH_INIT_CONTAINER_INJECTED = "StashInitContainerInjected"
    RESTORE_JOB_CREATED = "RestoreJobCreated"
    RESTORE_EXECUTOR_ENSURED = "RestoreExecutorEnsured"
    RESTORE_COMPLETED = "RestoreCompleted"
    PRE_RESTORE_HOOK_EXECUTION_SUCCEEDED = "PreRestoreHookExecutionSucceeded"
    POST_RESTORE_HOOK_EXECUTION_SUCCEEDED = "PostRestoreHookExecutionSucceeded"


class ConditionReason(StrEnum):
    """Reasons Stash gives for a condition's last transition."""

    DEFAULT_SERVICE_ACCOUNT = "DefaultServiceAccount"
    OWN_SERVICE_ACCOUNT = "OwnServiceAccount"
    TARGET_AVAILABLE = "TargetAvailable"
    TARGET_NOT_AVAILABLE = "TargetNotAvailable"
    UNABLE_TO_CHECK_TARGET_AVAILABILITY = "UnableToCheckTargetAvailability"
    SIDECAR_INJECTION_SUCCEEDED = "SidecarInjectionSucceeded"
    SIDECAR_INJECTION_FAILED = "SidecarInjectionFailed"
    CRON_JOB_CREATION_SUCCEEDED = "CronJobCreationSucceeded"
    CRON_JOB_CREATION_FAILED = "CronJobCreationFailed"
    REPOSITORY_AVAILABLE = "RepositoryAvailable"
    REPOSITORY_NOT_AVAILABLE = "RepositoryNotAvailable"
    UNABLE_TO_CHECK_REPOSITORY_AVAILABILITY = "UnableToCheckRepositoryAvailability"
    BACKEND_SECRET_AVAILABLE = "BackendSecretAvailable"  # noqa: S105 - a condition name, not a secret
    BACKEND_SECRET_NOT_AVAILABLE = "BackendSecretNotAvailable"  # noqa: S105 - a condition name, not a secret
    UNABLE_TO_CHECK_BACKEND_SECRET_AVAILABILITY = "UnableToCheckBackendSecretAvailability"  # noqa: S105 - a condition name, not a secret
    RESOURCE_VALIDATION_PASSED = "ResourceValidationPassed"
    RESOURCE_VALIDATION_FAILED = "ResourceValidationFailed"
    SUCCESSFULLY_APPLIED_RETENTION_POLICY = "SuccessfullyAppliedRetentionPolicy"
    FAILED_TO_APPLY_RETENTION_POLICY = "FailedToApplyRetentionPolicy"
    BACKEND_REPOSITORY_FOUND = "BackendRepositoryFound"
    FAILED_TO_INITIALIZE_BACKEND_REPOSITORY = "FailedToInitializeBackendRepository"
    SUCCESSFULLY_VERIFIED_REPOSITORY_INTEGRITY = "SuccessfullyVerifiedRepositoryIntegrity"
    FAILED_TO_VERIFY_REPOSITORY_INTEGRITY = "FailedToVerifyRepositoryIntegrity"
    SUCCESSFULLY_PUSHED_REPOSITORY_METRICS = "SuccessfullyPushedRepositoryMetrics"
    FAILED_TO_PUSH_REPOSITORY_METRICS = "FailedToPushRepositoryMetrics"
    SKIPPED_TAKING_NEW_BACKUP = "SkippedTakingNewBackup"
    SUCCESSFULLY_CLEANED_BACKUP_HISTORY = "SuccessfullyCleanedBackupHistory"
    FAILED_TO_CLEAN_BACKUP_HISTORY = "FailedToCleanBackupHistory"
    SUCCESSFULLY_ENSURED_BACKUP_EXECUTOR = "SuccessfullyEnsuredBackupExecutor"
    FAILED_TO_ENSURE_BACKUP_EXECUTOR = "FailedToEnsureBackupExecutor"
    SUCCESSFULLY_EXECUTED_PRE_BACKUP_HOOK = "SuccessfullyExecutedPreBackupHook"
    FAILED_TO_EXECUTE_PRE_BACKUP_HOOK = "FailedToExecutePreBackupHook"
    SUCCESSFULLY_EXECUTED_POST_BACKUP_HOOK = "SuccessfullyExecutedPostBackupHook"
    FAILED_TO_EXECUTE_POST_BACKUP_HOOK = "FailedToExecutePostBackupHook"
    FAILED_TO_COMPLETE_WITHIN_DEADLINE = "FailedToCompleteWithinDeadline"
    INIT_CONTAINER_INJECTION_SUCCEEDED = "InitContainerInjectionSucceeded"
    INIT_CONTAINER_INJECTION_FAILED = "InitContainerInjectionFailed"
    RESTORE_JOB_CREATION_SUCCEEDED = "RestoreJobCreationSucceeded"
    RESTORE_JOB_CREATION_FAILED = "RestoreJobCreationFailed"
    SUCCESSFULLY_ENSURED_RESTORE_EXECUTOR = "SuccessfullyEnsuredRestoreExecutor"
    FAILED_TO_ENSURE_RESTORE_EXECUTOR = "FailedToEnsureRestoreExecutor"
    SUCCESSFULLY_EXECUTED_PRE_RESTORE_HOOK = "SuccessfullyExecutedPreRestoreHook"
    FAILED_TO_EXECUTE_PRE_RESTORE_HOOK = "FailedToExecutePreRestoreHook"
    SUCCESSFULLY_EXECUTED_POST_RESTORE_HOOK = "SuccessfullyExecutedPostRestoreHook"
    FAILED_TO_EXECUTE_POST_RESTORE_HOOK = "FailedToExecutePostRestoreHook"
    POST_RESTORE_TASKS_EXECUTED = "PostRestoreTasksExecuted"
    POST_RESTORE_TASKS_NOT_EXECUTED = "PostRestoreTasksNotExecuted"
    SUCCESSFULLY_PUSHED_METRICS = "SuccessfullyPushedMetrics"
    FAILED_TO_PUSH_METRICS = "FailedToPushMetrics"
    # stashlet's own reasons.
    RESTORE_DRILL_JOB_FAILED = "RestoreDrillJobFailed"
    BACKEND_UNREACHABLE = "BackendUnreachable"
    BACKEND_ANSWERS = "BackendAnswers"
    REPOSITORY_LOCKED = "RepositoryLocked"
    BACKEND_UNAVAILABLE = "BackendUnavailable"
