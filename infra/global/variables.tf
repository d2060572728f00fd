# ---- naming, regions, tags ---------------------------------------------------------------

variable "name" {
  description = "Prefix of every resource name (table, queues, cluster, functions, roles, ...). Lower-case letters, digits and hyphens; it also names the DynamoDB table itself."
  type        = string
  default     = "envplane"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.name))
    error_message = "The name must be 2 to 20 characters: a lower-case letter, then lower-case letters, digits and hyphens."
  }
}

variable "primary_region" {
  description = "The home region: active until the first failover (ENVPLANE_HOME_REGION). The KMS multi-region key and the table are created here."
  type        = string
  default     = "eu-west-1"
}

variable "secondary_region" {
  description = "The other region: a complete, passive copy of the platform (infra/region applied there too), the KMS replica key, the table replica. Must differ from primary_region."
  type        = string
  default     = "eu-central-1"
}

variable "tags" {
  description = "Extra tags for every resource (merged into the providers' default_tags, after the Project and ManagedBy tags)."
  type        = map(string)
  default     = {}
}

# ---- KMS -----------------------------------------------------------------------------------

variable "key_admin_role_arns" {
  description = "IAM roles that administer the KMS keys (policy, rotation, tags, replication; not their use, not their deletion). Empty: the role running this apply (its session issuer), so that KMS accepts the key policy (it refuses one that would lock the caller out). List every role that applies this root."
  type        = list(string)
  default     = []
}

variable "break_glass_role_arn" {
  description = "The only principal allowed kms:ScheduleKeyDeletion and kms:DisableKey on the keys. Empty: nobody (an explicit deny for everyone); set it before a deliberate teardown."
  type        = string
  default     = ""
}

variable "kms_deletion_window_days" {
  description = "Waiting period before a KMS key is deleted once scheduled. Deleting the key makes every sealed value, state and plan unreadable."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "KMS accepts a deletion window of 7 to 30 days."
  }
}

# ---- table ---------------------------------------------------------------------------------

variable "table_deletion_protection" {
  description = "DynamoDB deletion protection on the table and on its replica."
  type        = bool
  default     = true
}

# ---- what the regions report back (their own states) ----------------------------------------

variable "regions" {
  description = "What each region's root (infra/region) reports, keyed by region: `terraform output -json edge_input` of its workspace. Empty on the first apply of a deploy from zero; the edge (CloudFront, WAF, Route 53) is created once the edge origin's region is here. See README.md, \"Deploy from zero\"."
  type = map(object({
    api_endpoint              = string
    origin_target_domain_name = string
    origin_target_zone_id     = string
    egress_ips                = list(string)
  }))
  default = {}
}

# ---- edge (CloudFront + WAF + Route 53) --------------------------------------------------------

variable "enable_edge" {
  description = "Put CloudFront with a WAF web ACL in front of the HTTP APIs (WAF cannot be associated with an HTTP API directly)."
  type        = bool
  default     = true
}

variable "domain_name" {
  description = "Optional custom domain of the public API (e.g. api.envplane.example.com). With hosted_zone_id it also enables the Route 53 failover origin origin.<domain_name> and its health checks."
  type        = string
  default     = ""
}

variable "hosted_zone_id" {
  description = "Route 53 public hosted zone of domain_name: the alias record of the API, the failover records of origin.<domain_name>, the health checks. Empty: no DNS is managed here."
  type        = string
  default     = ""
}

variable "certificate_arn" {
  description = "ACM certificate in us-east-1 covering domain_name (CloudFront only takes certificates from us-east-1)."
  type        = string
  default     = ""
}

variable "edge_origin_region" {
  description = "Without Route 53 (no domain_name/hosted_zone_id), the region whose execute-api endpoint CloudFront uses as origin: switching it (and applying this root) is the fail-over of the edge. Empty: primary_region."
  type        = string
  default     = ""
}

variable "cloudfront_price_class" {
  description = "CloudFront price class: PriceClass_100, PriceClass_200 or PriceClass_All."
  type        = string
  default     = "PriceClass_100"
}

variable "waf_rate_limit" {
  description = "Requests per client IP per 5 minutes above which the WAF answers 429 (rate-based rule)."
  type        = number
  default     = 2000

  validation {
    condition     = var.waf_rate_limit >= 100
    error_message = "Use a limit of at least 100 (the lowest every 5.x provider version accepts)."
  }
}

variable "waf_common_rule_overrides" {
  description = "Extra rules of AWSManagedRulesCommonRuleSet switched to count. The body rules are always counted in the group and blocked by a rule of our own outside /v1/state/ and /v1/runner/ (modules/edge); SizeRestrictions_BODY is never blocked."
  type        = list(string)
  default     = []
}

variable "health_check_regions" {
  description = "Route 53 health checker regions (at least 3). Empty: Route 53's default set."
  type        = list(string)
  default     = []
}

variable "log_retention_days" {
  description = "Retention of the WAF log group."
  type        = number
  default     = 365
}
