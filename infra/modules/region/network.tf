# The sandboxes' network. RunTask (shared/aws/src/ecs.rs) places every sandbox in the
# private subnets with assignPublicIp DISABLED and the runner security group; a sandbox
# reaches the internet (Git hosts, registries, the envplane API, the clouds its templates
# manage) only through the NAT gateways, so its traffic leaves from their Elastic IPs:
# fixed addresses customers can allow-list (output `egress_ips`).
#
# The functions are not in this VPC: they call AWS APIs only.

# Zones pinned by ID (euw1-az1, ...): a zone name such as eu-west-1a maps to a different
# physical zone in each account, an ID does not. The NAT addresses are per zone, so a
# pinned zone list keeps the egress addresses customers allow-listed where they are.
data "aws_availability_zones" "pinned" {
  state = "available"

  filter {
    name   = "zone-id"
    values = var.availability_zone_ids
  }
}

locals {
  # The names, in the order of var.availability_zone_ids (the data source sorts its own).
  az_name_by_id = zipmap(data.aws_availability_zones.pinned.zone_ids, data.aws_availability_zones.pinned.names)
  azs           = [for id in var.availability_zone_ids : local.az_name_by_id[id]]
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
  #checkov:skip=CKV2_AWS_19:These addresses belong to the NAT gateways (allocation_id), which checkov does not follow; they are not meant for EC2 instances.

  domain = "vpc"

  # The addresses customers allow-list: losing one is an outage for them.
  lifecycle {
    prevent_destroy = true
  }

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
  #checkov:skip=CKV2_AWS_5:Attached at run time: the deployer's RunTask names this group (ENVPLANE_SECURITY_GROUPS) for every sandbox's network interface.
  name        = "${var.name}-sandboxes"
  description = "envplane sandboxes: no inbound"
  vpc_id      = aws_vpc.sandboxes.id

  tags = {
    Name = "${var.name}-sandboxes"
  }
}

resource "aws_vpc_security_group_egress_rule" "runner_ipv4" {
  #checkov:skip=CKV_AWS_382:Sandboxes run customers' templates, which reach arbitrary cloud APIs, Git hosts and registries; the NAT addresses, not the port list, are what the outside world can filter on.
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
  kms_key_id        = var.kms_key_arn
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
