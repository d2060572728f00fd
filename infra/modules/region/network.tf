# The sandboxes' network. RunTask (shared/aws/src/ecs.rs) places every sandbox in the
# private subnets with assignPublicIp DISABLED and the runner security group; a sandbox
# reaches the internet (Git hosts, registries, the envplane API, the clouds its templates
# manage) only through the NAT gateways, so its traffic leaves from their Elastic IPs:
# fixed addresses customers can allow-list (output `egress_ips`).
#
# The functions are not in this VPC: they call AWS APIs only.

data "aws_availability_zones" "available" {
  state = "available"
}

locals {
  azs = slice(data.aws_availability_zones.available.names, 0, var.availability_zone_count)
}

resource "aws_vpc" "sandboxes" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = {
    Name = "${var.name}-sandboxes"
  }
}

# No rule at all in the default security group: nothing should use it.
resource "aws_default_security_group" "sandboxes" {
  vpc_id = aws_vpc.sandboxes.id

  tags = {
    Name = "${var.name}-default-unused"
  }
}

resource "aws_internet_gateway" "sandboxes" {
  vpc_id = aws_vpc.sandboxes.id

  tags = {
    Name = "${var.name}-sandboxes"
  }
}

# ---- public subnets: the NAT gateways only --------------------------------------------------

resource "aws_subnet" "public" {
  count = length(local.azs)

  vpc_id                  = aws_vpc.sandboxes.id
  availability_zone       = local.azs[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 8, count.index)
  map_public_ip_on_launch = false

  tags = {
    Name = "${var.name}-public-${local.azs[count.index]}"
  }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.sandboxes.id

  tags = {
    Name = "${var.name}-public"
  }
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.sandboxes.id
}

resource "aws_route_table_association" "public" {
  count = length(local.azs)

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

# ---- NAT gateways with fixed Elastic IPs, one per zone ----------------------------------------

resource "aws_eip" "nat" {
  count = length(local.azs)

  domain = "vpc"

  tags = {
    Name = "${var.name}-egress-${local.azs[count.index]}"
  }
}

resource "aws_nat_gateway" "egress" {
  count = length(local.azs)

  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id

  tags = {
    Name = "${var.name}-egress-${local.azs[count.index]}"
  }

  depends_on = [aws_internet_gateway.sandboxes]
}

# ---- private subnets: where sandboxes run ------------------------------------------------------
#
# /20s: every Fargate task takes one address, and max_parallel_deployments of them may
# run at once.

resource "aws_subnet" "private" {
  count = length(local.azs)

  vpc_id            = aws_vpc.sandboxes.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index + 1)

  tags = {
    Name = "${var.name}-private-${local.azs[count.index]}"
  }
}

resource "aws_route_table" "private" {
  count = length(local.azs)

  vpc_id = aws_vpc.sandboxes.id

  tags = {
    Name = "${var.name}-private-${local.azs[count.index]}"
  }
}

resource "aws_route" "private_egress" {
  count = length(local.azs)

  route_table_id         = aws_route_table.private[count.index].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.egress[count.index].id
}

resource "aws_route_table_association" "private" {
  count = length(local.azs)

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

# ---- the sandboxes' security group: no inbound, any outbound -------------------------------------
#
# Outbound stays open: templates reach arbitrary endpoints (cloud APIs, databases,
# registries). The NAT addresses are what the outside world sees.

resource "aws_security_group" "runner" {
  name        = "${var.name}-sandboxes"
  description = "envplane sandboxes: no inbound"
  vpc_id      = aws_vpc.sandboxes.id

  tags = {
    Name = "${var.name}-sandboxes"
  }
}

resource "aws_vpc_security_group_egress_rule" "runner_ipv4" {
  security_group_id = aws_security_group.runner.id
  description       = "Any outbound, through the NAT gateways"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

# ---- flow logs ------------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "flow_logs" {
  count = var.enable_flow_logs ? 1 : 0

  name              = local.flow_log_group_name
  retention_in_days = var.log_retention_days
}

data "aws_iam_policy_document" "flow_logs_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "flow_logs" {
  count = var.enable_flow_logs ? 1 : 0

  name               = "${var.name}-flow-logs-${local.region}"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_trust.json
}

data "aws_iam_policy_document" "flow_logs" {
  count = var.enable_flow_logs ? 1 : 0

  statement {
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogGroups",
      "logs:DescribeLogStreams",
    ]
    resources = [
      aws_cloudwatch_log_group.flow_logs[0].arn,
      "${aws_cloudwatch_log_group.flow_logs[0].arn}:*",
    ]
  }
}

resource "aws_iam_role_policy" "flow_logs" {
  count = var.enable_flow_logs ? 1 : 0

  name   = "write-flow-logs"
  role   = aws_iam_role.flow_logs[0].id
  policy = data.aws_iam_policy_document.flow_logs[0].json
}

resource "aws_flow_log" "sandboxes" {
  count = var.enable_flow_logs ? 1 : 0

  vpc_id               = aws_vpc.sandboxes.id
  traffic_type         = "ALL"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow_logs[0].arn
  iam_role_arn         = aws_iam_role.flow_logs[0].arn
}
