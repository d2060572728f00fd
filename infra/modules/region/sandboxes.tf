# Where sandboxes run: the ECS cluster (ENVPLANE_ECS_CLUSTER) and the runner's Fargate
# task definition (ENVPLANE_RUNNER_TASK_DEFINITION, by family so RunTask always takes
# the latest ACTIVE revision), container `runner` (ENVPLANE_RUNNER_CONTAINER).
#
# The deployer's RunTask (shared/aws/src/ecs.rs) sets launchType FARGATE, awsvpc in the
# private subnets without a public IP, startedBy `<deployment_id>.<attempt>`, group
# `envplane:<org_id>`, three tags, and container overrides of exactly three variables:
# ENVPLANE_DEPLOYMENT_ID, ENVPLANE_API_URL and ENVPLANE_RUNNER_TOKEN. Everything else
# the container gets comes from here.

locals {
  runner_image = var.runner_image != "" ? var.runner_image : "${aws_ecr_repository.runner.repository_url}:${var.runner_image_tag}"

  # The ECR repository the image is pulled from, when it is one (any account or region):
  # the execution role may pull from it and from nothing else. Decided from variables
  # only, so the plan knows which statements the policy has.
  runner_image_ecr = regexall("^([0-9]{12})\\.dkr\\.ecr\\.([a-z0-9-]+)\\.amazonaws\\.com[^/]*/([^:@]+)", var.runner_image)
  runner_image_repository_arn = var.runner_image == "" ? aws_ecr_repository.runner.arn : (
    length(local.runner_image_ecr) > 0 ? format(
      "arn:%s:ecr:%s:%s:repository/%s",
      local.partition,
      local.runner_image_ecr[0][1],
      local.runner_image_ecr[0][0],
      local.runner_image_ecr[0][2],
    ) : ""
  )
  runner_pulls_from_ecr = var.runner_image == "" || length(local.runner_image_ecr) > 0

  # The root file system is read-only; /work (the runner's working directory and HOME)
  # and /tmp are the task's scratch volumes on Fargate ephemeral storage. HOME is /work
  # itself: it exists (a mount point) and is writable exactly when the workspace is, so
  # git's and Terraform's per-user files need no directory created beforehand.
  runner_environment = concat(
    [{ name = "HOME", value = "/work" }],
    var.runner_tools_dir == "" ? [] : [{ name = "ENVPLANE_TOOLS_DIR", value = var.runner_tools_dir }],
  )
}

resource "aws_ecr_repository" "runner" {
  name                 = "${var.name}-runner"
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  # The repository exists in both regions: ECR replication (infra/global, ecr.tf) copies
  # every image pushed in the home region into the other region's repository of the
  # same name, so each region's task definition pulls from its own region.
  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }
}

resource "aws_ecs_cluster" "sandboxes" {
  name = local.cluster_name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "runner" {
  name              = local.runner_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

# ---- roles ---------------------------------------------------------------------------------------

data "aws_iam_policy_document" "ecs_tasks_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# What the code inside a sandbox may do in AWS: nothing, unless the operator attaches
# policies (runner_task_role_policy_arns). The runner talks only to the envplane API.
resource "aws_iam_role" "runner_task" {
  name               = "${var.name}-runner-task-${local.region}"
  description        = "envplane sandboxes: no AWS permissions by default"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
}

resource "aws_iam_role_policy_attachment" "runner_task" {
  for_each = toset(var.runner_task_role_policy_arns)

  role       = aws_iam_role.runner_task.name
  policy_arn = each.value
}

# What ECS does to start a sandbox: pull the image, read the launch file into the
# container's environment, write the container's logs. Template code never holds this
# role (only the task role's credentials reach the container).
resource "aws_iam_role" "runner_execution" {
  name               = "${var.name}-runner-execution-${local.region}"
  description        = "ECS pulls the envplane runner image, reads launch files and writes logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
}

data "aws_iam_policy_document" "runner_execution" {
  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.runner.arn}:*"]
  }

  # environmentFiles: ECS reads the object and the bucket's location.
  statement {
    sid       = "ReadLaunchFiles"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.launch.arn}/launch/*"]
  }

  statement {
    sid       = "LocateLaunchBucket"
    actions   = ["s3:GetBucketLocation"]
    resources = [aws_s3_bucket.launch.arn]
  }

  dynamic "statement" {
    for_each = local.runner_pulls_from_ecr ? [1] : []

    content {
      sid       = "EcrAuthorization"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = local.runner_pulls_from_ecr ? [1] : []

    content {
      sid = "PullRunnerImage"
      actions = [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
      ]
      resources = [local.runner_image_repository_arn]
    }
  }
}

resource "aws_iam_role_policy" "runner_execution" {
  name   = "pull-image-read-launch-files-write-logs"
  role   = aws_iam_role.runner_execution.id
  policy = data.aws_iam_policy_document.runner_execution.json
}

# ---- the runner task definition ------------------------------------------------------------------

resource "aws_ecs_task_definition" "runner" {
  family                   = local.runner_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.runner_cpu)
  memory                   = tostring(var.runner_memory_mb)
  task_role_arn            = aws_iam_role.runner_task.arn
  execution_role_arn       = aws_iam_role.runner_execution.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.runner_cpu_architecture
  }

  # Scratch volumes without a host: Fargate backs them with the task's ephemeral storage.
  volume {
    name = "work"
  }

  volume {
    name = "tmp"
  }

  dynamic "ephemeral_storage" {
    for_each = var.runner_ephemeral_storage_gib > 20 ? [var.runner_ephemeral_storage_gib] : []

    content {
      size_in_gib = ephemeral_storage.value
    }
  }

  container_definitions = jsonencode([
    {
      name        = local.runner_container
      image       = local.runner_image
      essential   = true
      environment = local.runner_environment

      # The image's non-root user (runner/Dockerfile); nothing writes outside the volumes.
      user                   = "10001"
      privileged             = false
      readonlyRootFilesystem = true
      workingDirectory       = "/work"

      mountPoints = [
        { sourceVolume = "work", containerPath = "/work", readOnly = false },
        { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
      ]

      # Terraform and hooks are children of the runner: an init process reaps them. No
      # Linux capability at all: the runner needs none as uid 10001.
      linuxParameters = {
        initProcessEnabled = true
        capabilities = {
          drop = ["ALL"]
        }
      }

      # StopTask (a cancelled deployment) sends SIGTERM; the runner interrupts the IaC
      # process, which may need time to release a state lock. 120 s is Fargate's most.
      stopTimeout = 120

      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.runner.name
          awslogs-region        = local.region
          awslogs-stream-prefix = "runner"
        }
      }
    },
  ])
}
