# One role per function, each allowed exactly the calls its adapters make (checked
# against shared/aws/src):
#
#   every function  DynamoDB GetItem/Query/PutItem/DeleteItem on the table, Query on its
#                   indexes (TransactWriteItems is authorized as the Put and Delete
#                   actions it contains; the adapter writes no Update or ConditionCheck)
#   api             + SQS SendMessage; KMS GenerateDataKey/Decrypt for the key ring
#                   (encryption context key envplane:organization only) and through S3;
#                   S3 GetObject/PutObject/ListBucket (ListBucket turns a missing object
#                   into NoSuchKey instead of AccessDenied); no ECS: a cancel is a
#                   queue message the deployer acts on
#   deployer        + SQS receive/delete (event source mapping) and SendMessage (a
#                   message waiting for capacity is sent again); ECS ListTasks and RunTask
#                   of the runner task definition in the cluster, TagResource on RunTask,
#                   StopTask in the cluster (cancelled deployments), S3 PutObject of
#                   launch files in the launch bucket,
#                   iam:PassRole of the two task roles to ECS tasks
#   task-events     + SQS SendMessage (the environment's next deployment), and to its
#                   failure queue (asynchronous invocation destination)
#   reaper          + SQS SendMessage; ReceiveMessage/DeleteMessage on the dead-letter queue;
#                   ce:GetCostAndUsage (the daily spend job; Cost Explorer has no
#                   resource-level permissions)
#   webhook         + SQS SendMessage; KMS GenerateDataKey/Decrypt for the key ring (the
#                   GitHub connection's secrets, encryption context as the api's)
#   api, webhook    + secretsmanager:GetSecretValue of the origin-verify secret, and
#                   kms:Decrypt of it through Secrets Manager
#   reporter        + SQS receive/delete on the reports queue (event source mapping); KMS
#                   as the webhook's (also a notification target's sealed URL and
#                   secret); S3 GetObject/ListBucket of plan views
#   every function  + SQS SendMessage to the reports queue (a deployment that ends asks
#                   for its pull request's report and queues its notifications; the
#                   reporter queues a notification's retry)
#
# KMS encrypt/decrypt through DynamoDB (the table's customer-managed key) is allowed
# to every role with kms:ViaService = dynamodb.<region>.amazonaws.com.

data "aws_iam_policy_document" "lambda_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "function" {
  for_each = toset(local.functions)

  name               = "${var.name}-${each.key}-${local.region}"
  description        = "envplane ${each.key} function"
  assume_role_policy = data.aws_iam_policy_document.lambda_trust.json
}

resource "aws_iam_role_policy" "function" {
  for_each = toset(local.functions)

  name   = "${var.name}-${each.key}"
  role   = aws_iam_role.function[each.key].id
  policy = local.function_policies[each.key]
}

locals {
  function_policies = {
    api         = data.aws_iam_policy_document.api.json
    deployer    = data.aws_iam_policy_document.deployer.json
    task-events = data.aws_iam_policy_document.task_events.json
    reaper      = data.aws_iam_policy_document.reaper.json
    webhook     = data.aws_iam_policy_document.webhook.json
    reporter    = data.aws_iam_policy_document.reporter.json
  }
}

# ---- shared by every function ---------------------------------------------------------------------

data "aws_iam_policy_document" "function_common" {
  for_each = toset(local.functions)

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }

  statement {
    sid = "Table"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:Query",
      "dynamodb:PutItem",
      "dynamodb:DeleteItem",
    ]
    resources = [var.table_arn]
  }

  statement {
    sid       = "TableIndexes"
    actions   = ["dynamodb:Query"]
    resources = ["${var.table_arn}/index/*"]
  }

  statement {
    sid = "TableKeyThroughDynamoDb"
    actions = [
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:Encrypt",
      "kms:GenerateDataKey*",
      "kms:ReEncrypt*",
    ]
    resources = [var.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via_dynamodb]
    }
  }

  # Queueing a deployment (api, webhook), sending one again (deployer), queueing an
  # environment's next deployment after one concludes (task-events, reaper, webhook).
  statement {
    sid       = "SendDeployments"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.deployments.arn]
  }

  # Asking for a pull request's report and queueing notifications when a deployment
  # ends (every function that ends deployments), and a notification's retry (the
  # reporter).
  statement {
    sid       = "SendReports"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.reports.arn]
  }
}

# ---- api --------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "api" {
  source_policy_documents = [
    data.aws_iam_policy_document.function_common["api"].json,
    data.aws_iam_policy_document.organization_keys.json,
    data.aws_iam_policy_document.artifact_reads.json,
    data.aws_iam_policy_document.origin_secret.json,
  ]

  # shared/aws/src/s3.rs: PutObject with SSE-KMS (states, plans, plan views).
  statement {
    sid       = "WriteArtifacts"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/*"]
  }

  statement {
    sid       = "ArtifactsKeyThroughS3"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [var.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via_s3]
    }
  }
}

# shared/aws/src/kms.rs: GenerateDataKey and Decrypt with the encryption context
# {"envplane:organization": <org id>}, and nothing else (api, webhook, reporter: sealed
# variables and the GitHub connection's secrets).
data "aws_iam_policy_document" "organization_keys" {
  statement {
    sid       = "OrganizationDataKeys"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [var.kms_key_arn]

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "kms:EncryptionContextKeys"
      values   = ["envplane:organization"]
    }

    condition {
      test     = "Null"
      variable = "kms:EncryptionContextKeys"
      values   = ["false"]
    }
  }
}

# The origin-verify secret (api, webhook): GetSecretValue of AWSCURRENT and AWSPREVIOUS
# (a version stage is a parameter of the same action), and its CMK through Secrets
# Manager only.
data "aws_iam_policy_document" "origin_secret" {
  statement {
    sid       = "ReadOriginSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.origin_secret_arn]
  }

  statement {
    sid       = "OriginSecretKeyThroughSecretsManager"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via_secretsmanager]
    }
  }
}

# shared/aws/src/s3.rs GetObject (api; reporter: the plan views its comments show).
data "aws_iam_policy_document" "artifact_reads" {
  statement {
    sid       = "ReadArtifacts"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/*"]
  }

  statement {
    sid       = "ArtifactMissingIsNoSuchKey"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn]
  }

  statement {
    sid       = "ReadArtifactsKeyThroughS3"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via_s3]
    }
  }
}

# ---- deployer ------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "deployer" {
  source_policy_documents = [data.aws_iam_policy_document.function_common["deployer"].json]

  statement {
    sid = "ConsumeDeployments"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.deployments.arn]
  }

  # shared/aws/src/ecs.rs `launch`: ListTasks by startedBy, then RunTask with tags;
  # `stop` (a cancel the api queued): ListTasks by startedBy, then StopTask.
  statement {
    sid       = "ListSandboxes"
    actions   = ["ecs:ListTasks"]
    resources = ["*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.sandboxes.arn]
    }
  }

  statement {
    sid       = "RunSandboxes"
    actions   = ["ecs:RunTask"]
    resources = [local.runner_task_definitions]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.sandboxes.arn]
    }
  }

  statement {
    sid       = "StopSandboxes"
    actions   = ["ecs:StopTask"]
    resources = [local.cluster_tasks]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.sandboxes.arn]
    }
  }

  # RunTask carries tags (envplane:deployment-id, envplane:org-id, envplane:attempt):
  # ECS authorizes them as TagResource on the new task.
  statement {
    sid       = "TagSandboxesAtLaunch"
    actions   = ["ecs:TagResource"]
    resources = [local.cluster_tasks]

    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RunTask"]
    }
  }

  # shared/aws/src/launch_file.rs: the launch file RunTask names, written just before it.
  statement {
    sid       = "WriteLaunchFiles"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.launch.arn}/launch/*"]
  }

  statement {
    sid       = "PassSandboxRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.runner_task.arn, aws_iam_role.runner_execution.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# ---- task-events ---------------------------------------------------------------------------------------

data "aws_iam_policy_document" "task_events" {
  source_policy_documents = [data.aws_iam_policy_document.function_common["task-events"].json]

  statement {
    sid       = "ReportFailedInvocations"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.task_events_failures.arn]
  }
}

# ---- reaper --------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "reaper" {
  source_policy_documents = [data.aws_iam_policy_document.function_common["reaper"].json]

  statement {
    sid       = "DrainDeadLetters"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage"]
    resources = [aws_sqs_queue.dead_letters.arn]
  }

  statement {
    sid       = "ReadTheBill"
    actions   = ["ce:GetCostAndUsage"]
    resources = ["*"]
  }
}

# ---- webhook -------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "webhook" {
  source_policy_documents = [
    data.aws_iam_policy_document.function_common["webhook"].json,
    data.aws_iam_policy_document.organization_keys.json,
    data.aws_iam_policy_document.origin_secret.json,
  ]
}

# ---- reporter ------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "reporter" {
  source_policy_documents = [
    data.aws_iam_policy_document.function_common["reporter"].json,
    data.aws_iam_policy_document.organization_keys.json,
    data.aws_iam_policy_document.artifact_reads.json,
  ]

  statement {
    sid = "ConsumeReports"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.reports.arn]
  }
}
