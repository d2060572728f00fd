variable "name" {
  description = "Prefix of every resource name."
  type        = string
}

variable "origin_domain_name" {
  description = "The distribution's origin host: origin.<domain> (Route 53 failover record) or a region's execute-api host."
  type        = string
}

variable "origin_secret_value" {
  description = "Value of the x-envplane-origin header CloudFront adds to every request (the origin-verify secret's AWSCURRENT)."
  type        = string
  sensitive   = true
}

variable "log_kms_key_arn" {
  description = "KMS key in us-east-1 encrypting the WAF log group."
  type        = string
}

variable "domain_name" {
  description = "Optional custom domain of the API; empty: the CloudFront domain."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate (us-east-1) for domain_name."
  type        = string
}

variable "price_class" {
  description = "CloudFront price class."
  type        = string
}

variable "rate_limit" {
  description = "Requests per client IP per 5 minutes before the WAF blocks it."
  type        = number
}

variable "common_rule_overrides" {
  description = "Extra rules of AWSManagedRulesCommonRuleSet set to count (the body rules always are, see main.tf)."
  type        = list(string)
}

variable "log_retention_days" {
  description = "Retention of the WAF log group."
  type        = number
}

variable "sandbox_egress_ips" {
  description = "The sandboxes' NAT gateway addresses, exempt from the rate limit and the common rule set."
  type        = list(string)
}
