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
  description = "The active region: the platform (functions, queue, cluster, bucket, API) runs here, and the DynamoDB table and KMS key are created here."
  type        = string
  default     = "us-east-1"
}

variable "secondary_region" {
  description = "The passive region: it holds the DynamoDB global table replica and the KMS replica key only. Must differ from primary_region."
  type        = string
  default     = "us-west-2"
}

variable "tags" {
  description = "Extra tags for every resource (merged into the providers' default_tags, after the Project and ManagedBy tags)."
  type        = map(string)
  default     = {}
}

# ---- data plane ----------------------------------------------------------------------------

variable "kms_deletion_window_days" {
  description = "Waiting period before the KMS key (and its replica) is deleted after a destroy. Deleting the key makes every sealed value, state and plan unreadable."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "KMS accepts a deletion window of 7 to 30 days."
  }
}

variable "table_deletion_protection" {
  description = "DynamoDB deletion protection on the table. Turn it off (and apply) before a deliberate destroy."
  type        = bool
  default     = true
}

# ---- build outputs -------------------------------------------------------------------------

variable "lambda_package_dir" {
  description = "Directory holding `<function>/bootstrap.zip` for api, deployer, task-events and reaper, as `cargo lambda build --output-format zip` writes them. Empty means ../target/lambda relative to this directory."
  type        = string
  default     = ""
}

variable "function_packages" {
  description = "Per-function override of the zip path, e.g. { api = \"/builds/api.zip\" }. Keys: api, deployer, task-events, reaper."
  type        = map(string)
  default     = {}
}

variable "runner_image" {
  description = "Full image reference of the runner (`envplane-runner` as entrypoint). Empty means `<the ECR repository this stack creates>:<runner_image_tag>`. The repository has no Dockerfile yet: see README.md for what the image must contain."
  type        = string
  default     = ""
}

variable "runner_image_tag" {
  description = "Tag of the runner image in the created ECR repository (used when runner_image is empty). Tags are immutable: push a new tag per release."
  type        = string
  default     = "0.1.0"
}

# ---- sandboxes -----------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "CIDR of the sandboxes' VPC. Public subnets take /24s at its start, private ones /20s after them."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zone_count" {
  description = "How many availability zones get a public subnet, a NAT gateway with its Elastic IP, and a private subnet. Every NAT IP is an egress address customers may have to allow-list."
  type        = number
  default     = 2

  validation {
    condition     = var.availability_zone_count >= 1 && var.availability_zone_count <= 4
    error_message = "Use 1 to 4 availability zones."
  }
}

variable "enable_flow_logs" {
  description = "VPC flow logs of the sandboxes' network to CloudWatch Logs (an audit trail of where sandboxes connected)."
  type        = bool
  default     = true
}

variable "runner_cpu_architecture" {
  description = "CPU architecture of the runner task: ARM64 or X86_64. The image must be built for it."
  type        = string
  default     = "ARM64"

  validation {
    condition     = contains(["ARM64", "X86_64"], var.runner_cpu_architecture)
    error_message = "The runner CPU architecture must be ARM64 or X86_64."
  }
}

variable "runner_cpu" {
  description = "Fargate CPU units of one sandbox (256, 512, 1024, 2048, 4096, ...)."
  type        = number
  default     = 1024
}

variable "runner_memory_mb" {
  description = "Fargate memory (MiB) of one sandbox; must be a valid combination with runner_cpu."
  type        = number
  default     = 2048
}

variable "runner_ephemeral_storage_gib" {
  description = "Ephemeral storage of one sandbox in GiB (20 is Fargate's default and adds no setting; 21 to 200 otherwise)."
  type        = number
  default     = 20

  validation {
    condition     = var.runner_ephemeral_storage_gib >= 20 && var.runner_ephemeral_storage_gib <= 200
    error_message = "Fargate ephemeral storage is 20 to 200 GiB."
  }
}

variable "runner_tools_dir" {
  description = "Value of ENVPLANE_TOOLS_DIR in the runner container, when the image ships Terraform binaries as `<dir>/terraform/<version>/terraform`. Empty: not set (the runner downloads and verifies the version a template asks for)."
  type        = string
  default     = ""
}

variable "runner_task_role_policy_arns" {
  description = "Managed policies to attach to the sandboxes' task role. Empty by default: a sandbox talks only to the envplane API and needs no AWS permission; templates bring their own cloud credentials as variables."
  type        = list(string)
  default     = []
}

variable "max_parallel_deployments" {
  description = "ENVPLANE_MAX_PARALLEL_DEPLOYMENTS: sandboxes running at once (a soft limit). Keep it within the account's Fargate vCPU quota divided by the runner's vCPUs."
  type        = number
  default     = 50
}

variable "deployment_quotas" {
  description = "ENVPLANE_QUOTA_*: what one deployment may use: log bytes and steps (hitting one ends the deployment with a reason naming it), state and plan bytes (larger uploads are refused with 413). Give all four to change any."
  type = object({
    log_bytes   = number
    steps       = number
    state_bytes = number
    plan_bytes  = number
  })
  default = {
    log_bytes   = 67108864
    steps       = 200
    state_bytes = 67108864
    plan_bytes  = 67108864
  }

  validation {
    condition     = alltrue([for quota in values(var.deployment_quotas) : quota >= 1 && floor(quota) == quota])
    error_message = "Every quota is a whole number of at least 1."
  }
}

# ---- queue ---------------------------------------------------------------------------------

variable "redrive_limit" {
  description = "maxReceiveCount of the deployments queue's redrive policy, and the deployer's ENVPLANE_REDRIVE_LIMIT (they must be equal)."
  type        = number
  default     = 5

  validation {
    condition     = var.redrive_limit >= 1 && var.redrive_limit <= 1000
    error_message = "SQS accepts a maxReceiveCount of 1 to 1000."
  }
}

variable "queue_visibility_timeout_seconds" {
  description = "Visibility timeout of the deployments queue: how long a record the deployer reported as failed (e.g. no free sandbox slot) waits before its next delivery. Raised to the deployer's timeout when lower."
  type        = number
  default     = 30
}

variable "deployer_max_concurrency" {
  description = "Most deployer invocations the SQS event source mapping runs at once (2 to 1000)."
  type        = number
  default     = 5

  validation {
    condition     = var.deployer_max_concurrency >= 2 && var.deployer_max_concurrency <= 1000
    error_message = "The event source mapping's maximum concurrency is 2 to 1000."
  }
}

variable "reaper_schedule" {
  description = "EventBridge schedule expression of the reaper, which also runs the watchdog and the scheduled jobs (time to live, deploy and destroy calendars): those act within one period of their time."
  type        = string
  default     = "rate(1 minute)"
}

variable "region_role" {
  description = "ENVPLANE_REGION_ROLE: active, or passive for a standby region, which runs no scheduled jobs."
  type        = string
  default     = "active"

  validation {
    condition     = contains(["active", "passive"], var.region_role)
    error_message = "region_role is active or passive."
  }
}

# ---- functions -----------------------------------------------------------------------------

variable "function_memory_mb" {
  description = "Memory per function, merged over the defaults { api = 512, deployer = 256, task-events = 256, reaper = 256, webhook = 256, reporter = 256 }."
  type        = map(number)
  default     = {}
}

variable "function_timeout_seconds" {
  description = "Timeout per function, merged over the defaults { api = 29, deployer = 25, task-events = 30, reaper = 300, webhook = 29, reporter = 180 }. The api's and the webhook's must stay under API Gateway's 30 s integration limit; the reporter's must hold a batch of 10 notifications to slow targets (10 s each)."
  type        = map(number)
  default     = {}
}

variable "function_reserved_concurrency" {
  description = "Reserved concurrency per function, merged over the defaults { api = -1, deployer = -1, task-events = -1, reaper = 1, webhook = -1, reporter = -1 } (-1: none). Reserving needs unreserved account concurrency to spare; new accounts with a low limit may have to set reaper = -1. The deployer is limited by deployer_max_concurrency instead."
  type        = map(number)
  default     = {}
}

variable "log_level" {
  description = "RUST_LOG of every function: a level and target=level pairs, e.g. `info,envplane_aws=debug`."
  type        = string
  default     = "info"
}

variable "log_retention_days" {
  description = "Retention of every CloudWatch log group this stack creates."
  type        = number
  default     = 30
}

variable "artifact_noncurrent_version_days" {
  description = "Days a replaced or deleted object version (state, plan) is kept in the artifacts bucket before it expires."
  type        = number
  default     = 90
}

# ---- GitHub -------------------------------------------------------------------------------

variable "github_api_url" {
  description = "GitHub's REST API, which the webhook, reporter and api functions call: https://api.github.com, or a GitHub Enterprise Server's https://<host>/api/v3."
  type        = string
  default     = "https://api.github.com"

  validation {
    condition     = can(regex("^https://", var.github_api_url))
    error_message = "github_api_url must be an https:// URL."
  }
}

# ---- API ----------------------------------------------------------------------------------

variable "api_throttling_rate_limit" {
  description = "Steady-state requests per second the HTTP API stage allows, all clients and sandboxes together. A busy sandbox ships a log chunk every 300 ms, and the runner does not retry a 429."
  type        = number
  default     = 500
}

variable "api_throttling_burst_limit" {
  description = "Burst of requests the HTTP API stage allows."
  type        = number
  default     = 1000
}

variable "sandbox_api_url" {
  description = "ENVPLANE_API_URL: the https:// URL sandboxes call back. Empty means the HTTP API's own execute-api endpoint, NOT the CloudFront URL: CloudFront refuses the LOCK/UNLOCK methods of Terraform's http state backend (see README.md). Set it to the public URL once the runner locks with standard methods."
  type        = string
  default     = ""

  validation {
    condition     = var.sandbox_api_url == "" || can(regex("^https://", var.sandbox_api_url))
    error_message = "The sandbox API URL must be empty or start with https://."
  }
}

# ---- edge (CloudFront + WAF) ----------------------------------------------------------------

variable "enable_edge" {
  description = "Put CloudFront with a WAF web ACL in front of the HTTP API (WAF cannot be associated with an HTTP API directly). Clients then use the CloudFront or custom-domain URL."
  type        = bool
  default     = true
}

variable "api_domain_name" {
  description = "Optional custom domain of the public API (e.g. api.envplane.example.com) served by CloudFront. Needs api_certificate_arn; the DNS record (CNAME or alias to the distribution) is yours to create."
  type        = string
  default     = ""
}

variable "api_certificate_arn" {
  description = "ARN of an ACM certificate in us-east-1 covering api_domain_name (CloudFront only takes certificates from us-east-1)."
  type        = string
  default     = ""
}

variable "cloudfront_price_class" {
  description = "CloudFront price class: PriceClass_100, PriceClass_200 or PriceClass_All."
  type        = string
  default     = "PriceClass_100"
}

variable "waf_rate_limit" {
  description = "Requests per client IP per 5 minutes above which the WAF blocks the IP (rate-based rule)."
  type        = number
  default     = 2000

  validation {
    condition     = var.waf_rate_limit >= 100
    error_message = "Use a limit of at least 100 (the lowest every 5.x provider version accepts)."
  }
}

variable "waf_common_rule_overrides" {
  description = "Rules of AWSManagedRulesCommonRuleSet switched to count instead of block. SizeRestrictions_BODY blocks bodies over 8 KB, and the API accepts up to 1 MB (variables, hooks)."
  type        = list(string)
  default     = ["SizeRestrictions_BODY"]
}
