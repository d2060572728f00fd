# What invokes the deployer, the reporter, task-events and the reaper. In a passive
# region (var.active = false) every one of these triggers is off: the event source
# mappings are disabled (messages wait in the queue) and the rules are DISABLED. The
# code also checks the table's active-region item before acting, so a trigger left on
# by mistake does no harm; this keeps a passive region from spending invocations.

locals {
  rule_state = var.active ? "ENABLED" : "DISABLED"
}

# ---- deployer: the deployments queue ----------------------------------------------------------------
#
# Batches of up to 10; the handler answers with the records to deliver again
# (`SqsBatchResponse`, shared/aws/src/sqs.rs), which Lambda only honours with
# ReportBatchItemFailures. Concurrency is capped here rather than with reserved
# concurrency, which would make Lambda throttle (and redeliver) messages.

resource "aws_lambda_event_source_mapping" "deployer" {
  enabled                 = var.active
  event_source_arn        = aws_sqs_queue.deployments.arn
  function_name           = aws_lambda_function.function["deployer"].arn
  batch_size              = 10
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.deployer_max_concurrency
  }
}

# ---- reporter: the reports queue ------------------------------------------------------------------
#
# A report GitHub could not take returns to the queue (a batch item failure) and is tried
# again after the visibility timeout; after `redrive_limit` receives it rests in the
# reports dead-letter queue.

resource "aws_lambda_event_source_mapping" "reporter" {
  enabled                 = var.active
  event_source_arn        = aws_sqs_queue.reports.arn
  function_name           = aws_lambda_function.function["reporter"].arn
  batch_size              = 10
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = 2
  }
}

# ---- task-events: ECS "Task State Change", STOPPED, in this cluster ---------------------------------
#
# The handler (shared/aws/src/task_events.rs) reads detail.taskArn, lastStatus,
# startedBy, group, stopCode, stoppedReason and containers[].exitCode, ignores tasks
# whose group is not `envplane:<org>` and any status but STOPPED; the pattern filters
# the same way before the function is invoked (events/task-events/*.json are samples).

resource "aws_cloudwatch_event_rule" "task_stopped" {
  name        = "${var.name}-task-stopped"
  description = "envplane sandboxes (group envplane:*) that stopped in cluster ${local.cluster_name}"
  state       = local.rule_state

  event_pattern = jsonencode({
    source      = ["aws.ecs"]
    detail-type = ["ECS Task State Change"]
    detail = {
      clusterArn = [aws_ecs_cluster.sandboxes.arn]
      lastStatus = ["STOPPED"]
      group      = [{ prefix = "envplane:" }]
    }
  })
}

resource "aws_cloudwatch_event_target" "task_stopped" {
  rule      = aws_cloudwatch_event_rule.task_stopped.name
  target_id = "task-events"
  arn       = aws_lambda_function.function["task-events"].arn

  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 185
  }
}

resource "aws_lambda_permission" "task_stopped" {
  statement_id  = "AllowEventBridgeTaskStopped"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function["task-events"].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.task_stopped.arn
}

# EventBridge invokes asynchronously: Lambda retries a failed event twice, then sends it
# to the failure queue rather than dropping it.
resource "aws_lambda_function_event_invoke_config" "task_events" {
  function_name                = aws_lambda_function.function["task-events"].function_name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = 21600

  destination_config {
    on_failure {
      destination = aws_sqs_queue.task_events_failures.arn
    }
  }
}

# ---- reaper: a schedule ---------------------------------------------------------------------------------

resource "aws_cloudwatch_event_rule" "reaper" {
  name                = "${var.name}-reaper"
  description         = "envplane reaper: dead letters, watchdog, scheduled jobs"
  schedule_expression = var.reaper_schedule
  state               = local.rule_state
}

resource "aws_cloudwatch_event_target" "reaper" {
  rule      = aws_cloudwatch_event_rule.reaper.name
  target_id = "reaper"
  arn       = aws_lambda_function.function["reaper"].arn
}

resource "aws_lambda_permission" "reaper" {
  statement_id  = "AllowEventBridgeSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function["reaper"].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.reaper.arn
}

# A failed run is not retried: the next scheduled run does the same work.
resource "aws_lambda_function_event_invoke_config" "reaper" {
  function_name          = aws_lambda_function.function["reaper"].function_name
  maximum_retry_attempts = 0
}
