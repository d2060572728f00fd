output "api_url" {
  description = "The public API URL: the custom domain when one is set, else the CloudFront domain."
  value       = local.custom_domain ? "https://${var.domain_name}" : "https://${aws_cloudfront_distribution.api.domain_name}"
}

output "distribution_domain_name" {
  description = "The distribution's domain: the target of the custom domain's DNS record."
  value       = aws_cloudfront_distribution.api.domain_name
}

output "distribution_id" {
  description = "The CloudFront distribution."
  value       = aws_cloudfront_distribution.api.id
}

output "web_acl_arn" {
  description = "The WAF web ACL in front of the API."
  value       = aws_wafv2_web_acl.api.arn
}

output "distribution_hosted_zone_id" {
  description = "The distribution's Route 53 zone (alias records)."
  value       = aws_cloudfront_distribution.api.hosted_zone_id
}
