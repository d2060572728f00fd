# Alarms, one SNS topic per region. CloudWatch alarm actions and EventBridge targets
# must be in their own region, so each region has its topic (a global one would not
# help: the alarms of a region that is down cannot fire anyway).
#
# The topic is encrypted with the platform key; the key policy (infra/global) lets
# cloudwatch.amazonaws.com and events.amazonaws.com use it for this account only.

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  display_name      = "envplane alarms (${local.region})"
  kms_master_key_id = var.kms_key_arn
}

data "aws_iam_policy_document" "alarms_topic" {
  statement {
    sid       = "AlarmsAndEventsPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]

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

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms_topic.json
}

resource "aws_sns_topic_subscription" "alarms_email" {
  for_each = toset(var.alarm_email_addresses)

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

locals {
  alarm_actions = [aws_sns_topic.alarms.arn]

  # Queues that must stay empty: anything in them is a deployment, a report or a task
  # event the platform could not handle.
  must_stay_empty = {
    deployments-dlq     = aws_sqs_queue.dead_letters.name
    reports-dlq         = aws_sqs_queue.reports_dead_letters.name
    task-events-failure = aws_sqs_queue.task_events_failures.name
  }

  function_metrics = {
    for pair in setproduct(local.functions, ["Errors", "Throttles"]) :
    "${pair[0]}-${lower(pair[1])}" => { function = pair[0], metric = pair[1] }
  }
}

resource "aws_cloudwatch_metric_alarm" "queue_not_empty" {
  for_each = local.must_stay_empty

  alarm_name          = "${var.name}-${each.key}-not-empty"
  alarm_description   = "Messages in ${each.value}: handled by nothing or failed every retry (docs/operations.md)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "deployments_age" {
  alarm_name          = "${var.name}-deployments-oldest-message"
  alarm_description   = "The deployments queue is not being drained (deployer down, disabled in the active region, or out of sandbox slots)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.deployments.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  threshold           = var.deployments_age_threshold_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "function" {
  for_each = local.function_metrics

  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = "${each.value.metric} of the ${each.value.function} function."
  namespace           = "AWS/Lambda"
  metric_name         = each.value.metric
  dimensions          = { FunctionName = aws_lambda_function.function[each.value.function].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "api_5xx" {
  alarm_name          = "${var.name}-api-5xx"
  alarm_description   = "The HTTP API answered 5xx (function errors, timeouts, integration failures)."
  namespace           = "AWS/ApiGateway"
  metric_name         = "5xx"
  dimensions          = { ApiId = aws_apigatewayv2_api.main.id, Stage = "$default" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 5
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Replication from this region's replica of the global table to the peer's. The metric
# is published by the region that sends the change (dimension ReceivingRegion).
resource "aws_cloudwatch_metric_alarm" "table_replication_latency" {
  alarm_name          = "${var.name}-table-replication-latency"
  alarm_description   = "DynamoDB global table replication to ${var.peer_region} is late: a failover now would lose the newest writes (envplane-ops failover --max-lag-seconds)."
  namespace           = "AWS/DynamoDB"
  metric_name         = "ReplicationLatency"
  dimensions          = { TableName = var.table_name, ReceivingRegion = var.peer_region }
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 2
  threshold           = var.replication_latency_threshold_ms
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "nat_port_allocation" {
  count = length(local.azs)

  alarm_name          = "${var.name}-nat-port-allocation-${var.availability_zone_ids[count.index]}"
  alarm_description   = "The NAT gateway in ${var.availability_zone_ids[count.index]} could not allocate a source port: sandboxes' connections fail (too many to one destination)."
  namespace           = "AWS/NATGateway"
  metric_name         = "ErrorPortAllocation"
  dimensions          = { NatGatewayId = aws_nat_gateway.egress[count.index].id }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Someone scheduled the platform key's deletion or disabled it (CloudTrail management
# events, which EventBridge receives in the key's region). The key policy already denies
# both to everyone but the break-glass role; this tells when that role used them.
resource "aws_cloudwatch_event_rule" "key_deletion" {
  name        = "${var.name}-kms-key-deletion"
  description = "ScheduleKeyDeletion or DisableKey on the envplane key in ${local.region}"
  state       = "ENABLED"

  event_pattern = jsonencode({
    source      = ["aws.kms"]
    detail-type = ["AWS API Call via CloudTrail"]
    detail = {
      eventSource = ["kms.amazonaws.com"]
      eventName   = ["ScheduleKeyDeletion", "DisableKey"]
      resources = {
        ARN = [var.kms_key_arn]
      }
    }
  })
}

resource "aws_cloudwatch_event_target" "key_deletion" {
  rule      = aws_cloudwatch_event_rule.key_deletion.name
  target_id = "alarms-topic"
  arn       = aws_sns_topic.alarms.arn
}
