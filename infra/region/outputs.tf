output "edge_input" {
  description = "What infra/global needs from this region: one entry of its `regions` variable (keyed by this region)."
  value = {
    api_endpoint              = module.region.api_endpoint
    origin_target_domain_name = module.region.origin_target_domain_name
    origin_target_zone_id     = module.region.origin_target_zone_id
    egress_ips                = module.region.egress_ips
  }
}

output "region" {
  description = "The region of this state."
  value       = var.region
}

output "active" {
  description = "Whether this region's triggers are on."
  value       = var.active
}

output "api_gateway_endpoint" {
  description = "This region's execute-api endpoint (CloudFront's origin, health checks); refuses requests without the origin header."
  value       = module.region.api_endpoint
}

output "sandbox_api_url" {
  description = "ENVPLANE_API_URL."
  value       = module.region.sandbox_api_url
}

output "egress_ips" {
  description = "This region's NAT Elastic IPs."
  value       = module.region.egress_ips
}

output "all_egress_ips" {
  description = "ENVPLANE_EGRESS_IPS of the api, as a list."
  value       = module.region.all_egress_ips
}

output "deployments_queue_url" {
  description = "ENVPLANE_QUEUE_URL."
  value       = module.region.deployments_queue_url
}

output "dead_letter_queue_url" {
  description = "ENVPLANE_DEAD_LETTER_QUEUE_URL."
  value       = module.region.dead_letter_queue_url
}

output "ecs_cluster" {
  description = "ENVPLANE_ECS_CLUSTER."
  value       = module.region.cluster_name
}

output "runner_task_definition" {
  description = "ENVPLANE_RUNNER_TASK_DEFINITION (family)."
  value       = module.region.runner_task_definition_family
}

output "runner_image" {
  description = "The image this region's sandboxes run."
  value       = module.region.runner_image
}

output "runner_repository_url" {
  description = "This region's runner repository (push in the home region only; replication fills the other)."
  value       = module.region.runner_repository_url
}

output "artifacts_bucket" {
  description = "ENVPLANE_ARTIFACTS_BUCKET."
  value       = module.region.artifacts_bucket
}

output "alarm_topic_arn" {
  description = "The alarm topic of this region."
  value       = module.region.alarm_topic_arn
}

output "function_names" {
  description = "The Lambda functions."
  value       = module.region.function_names
}
