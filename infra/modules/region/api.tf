# The HTTP API: one $default route proxying everything to the api function (payload
# format 2.0, which `lambda_http` reads), a $default stage (no stage prefix in paths:
# the router serves /health, /v1/... at the root) with access logs and throttling.
#
# WAF cannot be associated with an HTTP API; modules/edge puts CloudFront with a WAF
# web ACL in front of it. The execute-api endpoint stays enabled (CloudFront's origin
# without a custom domain, and the Route 53 health checks' target), but it is no way
# around the WAF: the api refuses every request without the x-envplane-origin header
# that only CloudFront adds (ENVPLANE_ORIGIN_SECRET_ARN), the webhook too.

resource "aws_apigatewayv2_api" "main" {
  name          = "${var.name}-api"
  description   = "envplane public API, runner API and Terraform state backend"
  protocol_type = "HTTP"
}

resource "aws_apigatewayv2_integration" "api" {
  api_id                 = aws_apigatewayv2_api.main.id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = aws_lambda_function.function["api"].invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 30000
}

resource "aws_apigatewayv2_route" "default" {
  #checkov:skip=CKV_AWS_309:Authorization is the api's own (API keys, runner tokens, the origin header; docs/security.md): an API Gateway authorizer would duplicate it and cost an invocation per request.
  api_id    = aws_apigatewayv2_api.main.id
  route_key = "$default"
  target    = "integrations/${aws_apigatewayv2_integration.api.id}"
}

# GitHub's deliveries go to their own function, with its own role.
resource "aws_apigatewayv2_integration" "webhook" {
  api_id                 = aws_apigatewayv2_api.main.id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = aws_lambda_function.function["webhook"].invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 30000
}

resource "aws_apigatewayv2_route" "github_webhook" {
  #checkov:skip=CKV_AWS_309:GitHub cannot send API Gateway credentials; the webhook verifies each delivery's X-Hub-Signature-256 HMAC before reading it.
  api_id    = aws_apigatewayv2_api.main.id
  route_key = "POST /webhooks/github"
  target    = "integrations/${aws_apigatewayv2_integration.webhook.id}"
}

resource "aws_cloudwatch_log_group" "api_access" {
  name              = local.api_access_log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.main.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit    = var.api_throttling_rate_limit
    throttling_burst_limit   = var.api_throttling_burst_limit
    detailed_metrics_enabled = true
  }

  # No header is logged: Authorization carries API keys and runner tokens.
  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access.arn
    format = jsonencode({
      requestId          = "$context.requestId"
      requestTime        = "$context.requestTime"
      sourceIp           = "$context.identity.sourceIp"
      userAgent          = "$context.identity.userAgent"
      httpMethod         = "$context.httpMethod"
      path               = "$context.path"
      protocol           = "$context.protocol"
      status             = "$context.status"
      responseLength     = "$context.responseLength"
      responseLatency    = "$context.responseLatency"
      integrationLatency = "$context.integrationLatency"
      integrationStatus  = "$context.integrationStatus"
      integrationError   = "$context.integrationErrorMessage"
    })
  }
}

resource "aws_lambda_permission" "webhook" {
  statement_id  = "AllowHttpApiWebhook"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function["webhook"].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.main.execution_arn}/*/*/webhooks/github"
}

resource "aws_lambda_permission" "api" {
  statement_id  = "AllowHttpApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function["api"].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.main.execution_arn}/*"
}

# ---- origin.<domain>: the name CloudFront reaches this region by ----------------------------
#
# With a custom domain, CloudFront's origin is the Route 53 failover record
# origin.<domain> (infra/global, dns.tf), which points at this custom domain in the
# healthy region. CloudFront sends Host = origin.<domain> (the origin request policy
# forwards every viewer header but Host), which API Gateway routes by this mapping.

resource "aws_apigatewayv2_domain_name" "origin" {
  count = var.origin_domain_name != "" ? 1 : 0

  domain_name = var.origin_domain_name

  domain_name_configuration {
    certificate_arn = var.origin_certificate_arn
    endpoint_type   = "REGIONAL"
    security_policy = "TLS_1_2"
  }
}

resource "aws_apigatewayv2_api_mapping" "origin" {
  count = var.origin_domain_name != "" ? 1 : 0

  api_id      = aws_apigatewayv2_api.main.id
  domain_name = aws_apigatewayv2_domain_name.origin[0].id
  stage       = aws_apigatewayv2_stage.default.id
}
