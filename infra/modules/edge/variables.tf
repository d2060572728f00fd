variable "name" {
  description = "Prefix of every resource name."
  type        = string
}

variable "api_endpoint" {
  description = "The HTTP API's execute-api endpoint (https://...), the distribution's origin."
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
  description = "Rules of AWSManagedRulesCommonRuleSet set to count."
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
