"""Stable CloudFormation output keys.

Tests, CI and the local stage read stack outputs by these keys (``describe_stacks``); nothing
guesses a resource name. Plain Python so runtime code can import it without CDK.
"""

from __future__ import annotations

from typing import Final


class NetworkOutputs:
    VPC_ID: Final = "VpcId"
    PRIVATE_SUBNET_IDS: Final = "PrivateSubnetIds"
    COMPUTE_SECURITY_GROUP_ID: Final = "ComputeSecurityGroupId"
    ENDPOINT_SECURITY_GROUP_ID: Final = "EndpointSecurityGroupId"
    FLOW_LOG_GROUP_NAME: Final = "FlowLogGroupName"


class DataOutputs:
    DATA_KEY_ARN: Final = "DataKeyArn"
    OPS_KEY_ARN: Final = "OpsKeyArn"
    MODEL_BUCKET_NAME: Final = "ModelBucketName"
    DATA_BUCKET_NAME: Final = "DataBucketName"
    RESULTS_BUCKET_NAME: Final = "ResultsBucketName"
    ACCESS_LOG_BUCKET_NAME: Final = "AccessLogBucketName"
    PREDICTIONS_TABLE_NAME: Final = "PredictionsTableName"
    PREDICTIONS_TABLE_STREAM_ARN: Final = "PredictionsTableStreamArn"
    PREDICTIONS_BY_MODEL_VERSION_INDEX: Final = "PredictionsByModelVersionIndex"
    ACTIVE_VERSION_PARAMETER: Final = "ActiveModelVersionParameter"
    MODEL_PARAMETERS_PATH: Final = "ModelParametersPath"


class InferenceOutputs:
    """Outputs of the inference stack that ``mlpipe`` reconciles against (see the inference issue)."""

    ENDPOINT_NAME: Final = "EndpointName"
    SAGEMAKER_EXECUTION_ROLE_ARN: Final = "SageMakerExecutionRoleArn"
    INFERENCE_IMAGE_URI: Final = "InferenceImageUri"
    REST_API_ID: Final = "RestApiId"
    API_STAGE_NAME: Final = "ApiStageName"
    API_URL: Final = "ApiUrl"
    API_KEY_ID: Final = "ApiKeyId"
    STREAM_NAME: Final = "StreamName"
    STREAM_FAILURE_QUEUE_URL: Final = "StreamFailureQueueUrl"
    API_FUNCTION_NAME: Final = "ApiFunctionName"
    STREAM_FUNCTION_NAME: Final = "StreamFunctionName"
    DEPLOY_FUNCTION_NAME: Final = "DeployFunctionName"
    ALARM_TOPIC_ARN: Final = "AlarmTopicArn"
    ANSWER_CACHE_TABLE: Final = "AnswerCacheTableName"


class BatchOutputs:
    """Outputs of the batch stack: what starts a run, where its jobs go, and who hears of it."""

    STATE_MACHINE_ARN: Final = "BatchStateMachineArn"
    JOB_QUEUE_ARN: Final = "BatchJobQueueArn"
    JOB_DEFINITION_ARN: Final = "BatchJobDefinitionArn"
    NOTIFICATION_TOPIC_ARN: Final = "BatchNotificationTopicArn"
    SCHEDULE_RULE_NAME: Final = "BatchScheduleRuleName"
    EVENTS_DEAD_LETTER_QUEUE_URL: Final = "BatchEventsDeadLetterQueueUrl"
    LIST_FUNCTION_NAME: Final = "BatchListFunctionName"
    INLINE_FUNCTION_NAME: Final = "BatchInlineFunctionName"
    REPORT_FUNCTION_NAME: Final = "BatchReportFunctionName"
    INPUT_BUCKET_NAME: Final = "BatchInputBucketName"
    INPUT_PREFIX: Final = "BatchInputPrefix"
    OUTPUT_PREFIX: Final = "BatchOutputPrefix"
    RUNS_PREFIX: Final = "BatchRunsPrefix"


class AnalyticsOutputs:
    """Outputs of the analytics stack: the history's path, its catalog and where queries run."""

    DATABASE_NAME: Final = "AnalyticsDatabaseName"
    HISTORY_TABLE_NAME: Final = "AnalyticsHistoryTableName"
    HISTORY_LOCATION: Final = "AnalyticsHistoryLocation"
    BATCH_OUTPUT_TABLE_NAME: Final = "AnalyticsBatchOutputTableName"
    CRAWLER_NAME: Final = "AnalyticsCrawlerName"
    WORKGROUP_NAME: Final = "AnalyticsWorkGroupName"
    ATHENA_RESULTS_LOCATION: Final = "AnalyticsAthenaResultsLocation"
    DELIVERY_STREAM_NAME: Final = "AnalyticsDeliveryStreamName"
    TAP_FUNCTION_NAME: Final = "AnalyticsTapFunctionName"
    TAP_FAILURE_QUEUE_URL: Final = "AnalyticsTapFailureQueueUrl"


class ObservabilityOutputs:
    """Outputs of the observability stack: where alerts go, the dashboard, the drift monitor."""

    PAGING_TOPIC_ARN: Final = "PagingTopicArn"
    NOTICE_TOPIC_ARN: Final = "NoticeTopicArn"
    DASHBOARD_NAME: Final = "DashboardName"
    DRIFT_FUNCTION_NAME: Final = "DriftFunctionName"
    DRIFT_SCHEDULE_RULE_NAME: Final = "DriftScheduleRuleName"
    PIPELINE_DOWN_ALARM_NAME: Final = "PipelineDownAlarmName"

    @staticmethod
    def model_degraded_alarm(variant: str) -> str:
        return f"{variant}DegradedAlarmName"

    @staticmethod
    def drift_alarm(variant: str) -> str:
        return f"{variant}DriftAlarmName"


class TrainingOutputs:
    """The training stack's outputs (``mlpipe train``, ``mlpipe experiments``, the local stage)."""

    STATE_MACHINE_ARN: Final = "TrainingStateMachineArn"
    METADATA_TABLE_NAME: Final = "TrainingMetadataTableName"
    RUNS_FUNCTION_NAME: Final = "TrainingRunsFunctionName"
    NOTIFICATION_TOPIC_ARN: Final = "TrainingNotificationTopicArn"
    SCHEDULE_RULE_NAME: Final = "TrainingScheduleRuleName"
    TRAINING_ROLE_ARN: Final = "TrainingJobRoleArn"
    SOURCE_BUNDLE_URI: Final = "TrainingSourceBundleUri"
    DATA_BUCKET_NAME: Final = "TrainingDataBucketName"
    DATA_PREFIX: Final = "TrainingDataPrefix"
