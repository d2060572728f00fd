# The deployments queue (ENVPLANE_QUEUE_URL) and its dead-letter queue
# (ENVPLANE_DEAD_LETTER_QUEUE_URL, the reaper's). As in the emulator stack: the redrive
# policy moves a message to the DLQ after `redrive_limit` (default 5) receives, and the
# deployer reads the same number from ENVPLANE_REDRIVE_LIMIT to know a last delivery.
#
# Bodies are `{org_id, environment_id, deployment_id}` JSON: ids only, never a value.
# Encrypted at rest with SQS-managed keys.

locals {
  # An event source mapping refuses a queue whose visibility timeout is shorter than the
  # function's timeout.
  deployments_visibility_timeout = max(var.queue_visibility_timeout_seconds, local.timeout["deployer"])

  # A dead letter the reaper could not conclude must not come back within the same run.
  dead_letter_visibility_timeout = local.timeout["reaper"] + 60
}

resource "aws_sqs_queue" "dead_letters" {
  name                       = local.dead_letter_queue_name
  message_retention_seconds  = 1209600 # 14 days, the most SQS keeps
  visibility_timeout_seconds = local.dead_letter_visibility_timeout
  receive_wait_time_seconds  = 0 # the reaper stops at the first empty receive
  sqs_managed_sse_enabled    = true
}

resource "aws_sqs_queue" "deployments" {
  name                       = local.deployments_queue_name
  message_retention_seconds  = 1209600
  visibility_timeout_seconds = local.deployments_visibility_timeout
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letters.arn
    maxReceiveCount     = var.redrive_limit
  })
}

# Only the deployments queue may dead-letter into the DLQ.
resource "aws_sqs_queue_redrive_allow_policy" "dead_letters" {
  queue_url = aws_sqs_queue.dead_letters.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.deployments.arn]
  })
}

# Failed asynchronous invocations of task-events (after Lambda's own retries) land here
# instead of vanishing: a lost "task stopped" event would leave a deployment running
# until someone cancels it. Nothing consumes this queue; alarm on it.
# Pull request reports (ENVPLANE_REPORTS_QUEUE_URL): `{org_id, pull_request_id}`, ids only.
# Every function that ends deployments sends; the reporter consumes.
resource "aws_sqs_queue" "reports_dead_letters" {
  name                      = "${var.name}-reports-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "reports" {
  name                       = "${var.name}-reports"
  message_retention_seconds  = 86400 # a day-old report is stale: the next change sends another
  visibility_timeout_seconds = max(var.queue_visibility_timeout_seconds, local.timeout["reporter"])
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.reports_dead_letters.arn
    maxReceiveCount     = var.redrive_limit
  })
}

resource "aws_sqs_queue" "task_events_failures" {
  name                      = "${var.name}-task-events-failures"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

data "aws_iam_policy_document" "tls_only_queue" {
  for_each = {
    deployments          = aws_sqs_queue.deployments.arn
    reports              = aws_sqs_queue.reports.arn
    reports_dead_letters = aws_sqs_queue.reports_dead_letters.arn
    dead_letters         = aws_sqs_queue.dead_letters.arn
    task_events_failures = aws_sqs_queue.task_events_failures.arn
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [each.value]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "deployments" {
  queue_url = aws_sqs_queue.deployments.id
  policy    = data.aws_iam_policy_document.tls_only_queue["deployments"].json
}

resource "aws_sqs_queue_policy" "dead_letters" {
  queue_url = aws_sqs_queue.dead_letters.id
  policy    = data.aws_iam_policy_document.tls_only_queue["dead_letters"].json
}

resource "aws_sqs_queue_policy" "task_events_failures" {
  queue_url = aws_sqs_queue.task_events_failures.id
  policy    = data.aws_iam_policy_document.tls_only_queue["task_events_failures"].json
}

resource "aws_sqs_queue_policy" "reports" {
  queue_url = aws_sqs_queue.reports.id
  policy    = data.aws_iam_policy_document.tls_only_queue["reports"].json
}

resource "aws_sqs_queue_policy" "reports_dead_letters" {
  queue_url = aws_sqs_queue.reports_dead_letters.id
  policy    = data.aws_iam_policy_document.tls_only_queue["reports_dead_letters"].json
}
