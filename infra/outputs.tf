output "api_url" {
  description = "The public API URL clients (CLI, GitHub webhooks, browsers) use: CloudFront + WAF, or the custom domain. The execute-api endpoint when enable_edge is false."
  value       = var.enable_edge ? module.edge[0].api_url : module.primary.api_endpoint
}

output "api_gateway_endpoint" {
  description = "The HTTP API's own endpoint (no WAF in front of it)."
  value       = module.primary.api_endpoint
}

output "sandbox_api_url" {
  description = "ENVPLANE_API_URL, where sandboxes call back."
  value       = module.primary.sandbox_api_url
}

output "cloudfront_domain_name" {
  description = "Target of the custom domain's DNS record (CNAME or alias), when enable_edge is true."
  value       = var.enable_edge ? module.edge[0].distribution_domain_name : null
}

output "table_name" {
  description = "ENVPLANE_TABLE_NAME: the DynamoDB global table."
  value       = aws_dynamodb_table.main.name
}

output "table_arn" {
  description = "The table in the primary region."
  value       = aws_dynamodb_table.main.arn
}

output "table_replica_region" {
  description = "Where the table's replica is."
  value       = var.secondary_region
}

output "kms_key_arn" {
  description = "ENVPLANE_KMS_KEY_ID: the multi-region key in the primary region."
  value       = aws_kms_key.main.arn
}

output "kms_replica_key_arn" {
  description = "The replica key in the secondary region (what ENVPLANE_KMS_KEY_ID becomes there after a failover)."
  value       = aws_kms_replica_key.secondary.arn
}

output "deployments_queue_url" {
  description = "ENVPLANE_QUEUE_URL."
  value       = module.primary.deployments_queue_url
}

output "dead_letter_queue_url" {
  description = "ENVPLANE_DEAD_LETTER_QUEUE_URL."
  value       = module.primary.dead_letter_queue_url
}

output "task_events_failures_queue_url" {
  description = "Failed task-events invocations (should stay empty; alarm on it)."
  value       = module.primary.task_events_failures_queue_url
}

output "ecs_cluster" {
  description = "ENVPLANE_ECS_CLUSTER."
  value       = module.primary.cluster_name
}

output "runner_task_definition" {
  description = "ENVPLANE_RUNNER_TASK_DEFINITION (family)."
  value       = module.primary.runner_task_definition_family
}

output "runner_image" {
  description = "The image sandboxes run."
  value       = module.primary.runner_image
}

output "runner_repository_url" {
  description = "Push the runner image here (unless runner_image points elsewhere)."
  value       = module.primary.runner_repository_url
}

output "artifacts_bucket" {
  description = "ENVPLANE_ARTIFACTS_BUCKET."
  value       = module.primary.artifacts_bucket
}

output "egress_ips" {
  description = "Fixed egress addresses of every sandbox (NAT gateway Elastic IPs), for customers' allow-lists."
  value       = module.primary.egress_ips
}

output "function_names" {
  description = "The Lambda functions."
  value       = module.primary.function_names
}
