output "api_endpoint" {
  description = "The HTTP API's execute-api endpoint (https://<id>.execute-api.<region>.amazonaws.com), $default stage."
  value       = aws_apigatewayv2_api.main.api_endpoint
}

output "sandbox_api_url" {
  description = "ENVPLANE_API_URL: where sandboxes call back."
  value       = local.sandbox_api_url
}

output "deployments_queue_url" {
  description = "ENVPLANE_QUEUE_URL."
  value       = aws_sqs_queue.deployments.url
}

output "dead_letter_queue_url" {
  description = "ENVPLANE_DEAD_LETTER_QUEUE_URL."
  value       = aws_sqs_queue.dead_letters.url
}

output "task_events_failures_queue_url" {
  description = "Where failed task-events invocations land (alarm on its depth)."
  value       = aws_sqs_queue.task_events_failures.url
}

output "cluster_name" {
  description = "ENVPLANE_ECS_CLUSTER."
  value       = aws_ecs_cluster.sandboxes.name
}

output "cluster_arn" {
  description = "ARN of the sandboxes' cluster."
  value       = aws_ecs_cluster.sandboxes.arn
}

output "runner_task_definition_family" {
  description = "ENVPLANE_RUNNER_TASK_DEFINITION."
  value       = aws_ecs_task_definition.runner.family
}

output "runner_task_definition_arn" {
  description = "The current revision of the runner task definition."
  value       = aws_ecs_task_definition.runner.arn
}

output "runner_image" {
  description = "The image the runner task definition runs."
  value       = local.runner_image
}

output "runner_repository_url" {
  description = "The ECR repository created for the runner image."
  value       = aws_ecr_repository.runner.repository_url
}

output "artifacts_bucket" {
  description = "ENVPLANE_ARTIFACTS_BUCKET."
  value       = aws_s3_bucket.artifacts.bucket
}

output "launch_bucket" {
  description = "ENVPLANE_LAUNCH_BUCKET."
  value       = aws_s3_bucket.launch.bucket
}

output "private_subnet_ids" {
  description = "ENVPLANE_SUBNETS (comma-joined in the functions' environment)."
  value       = aws_subnet.private[*].id
}

output "runner_security_group_id" {
  description = "ENVPLANE_SECURITY_GROUPS."
  value       = aws_security_group.runner.id
}

output "egress_ips" {
  description = "The NAT gateways' Elastic IPs: every sandbox connection leaves from one of these."
  value       = aws_eip.nat[*].public_ip
}

output "function_names" {
  description = "The Lambda functions, by role."
  value       = { for function, lambda in aws_lambda_function.function : function => lambda.function_name }
}

output "all_egress_ips" {
  description = "ENVPLANE_EGRESS_IPS as a list: this region's NAT addresses and the other region's (input), sorted."
  value       = local.all_egress_ips
}

output "origin_target_domain_name" {
  description = "Target of the origin.<domain> failover alias in this region (the API Gateway custom domain's regional name); empty without a custom domain."
  value       = var.origin_domain_name != "" ? aws_apigatewayv2_domain_name.origin[0].domain_name_configuration[0].target_domain_name : ""
}

output "origin_target_zone_id" {
  description = "Hosted zone of origin_target_domain_name (for the alias record); empty without a custom domain."
  value       = var.origin_domain_name != "" ? aws_apigatewayv2_domain_name.origin[0].domain_name_configuration[0].hosted_zone_id : ""
}

output "alarm_topic_arn" {
  description = "The SNS topic every alarm of this region publishes to."
  value       = aws_sns_topic.alarms.arn
}

output "runner_repository_name" {
  description = "The runner's ECR repository name (the same in both regions; ECR replication fills the other one)."
  value       = aws_ecr_repository.runner.name
}
