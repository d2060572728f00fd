//! What the OpenAPI document promises beyond each handler's annotation, added to every
//! operation in one place so that no operation forgets it: the error answers the shared
//! extractors and core can give, the rules of the parameters every listing and variable
//! route shares (taken from the constants that enforce them), and the links from an
//! object's creation to what takes its id.

use envplane_core::service::MAX_PAGE_SIZE;
use envplane_core::validate::{reserved_environment_names, CURSOR, VARIABLE_NAME};
use serde_json::{json, Map, Value};
use utoipa::openapi::path::{Operation, Parameter, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder, Schema};
use utoipa::Modify;

pub struct Contract;

impl Modify for Contract {
    fn modify(&self, openapi: &mut OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                (false, &mut item.get),
                (true, &mut item.put),
                (true, &mut item.post),
                (true, &mut item.delete),
                (true, &mut item.patch),
            ];
            for (writes, operation) in operations {
                if let Some(operation) = operation {
                    for parameter in operation.parameters.iter_mut().flatten() {
                        constrain(parameter);
                    }
                    declare_errors(operation, writes);
                    add_links(operation);
                }
            }
        }
    }
}

/// Where the object an operation creates goes next: the target operation and what of
/// the created object's body it takes, as a path parameter or as body fields. Generated
/// clients read these; the fuzzer's stateful phase follows them to reach a deployment
/// through a project, a template and an environment.
struct Follow {
    from: &'static str,
    status: &'static str,
    to: &'static str,
    path_id: Option<&'static str>,
    body: &'static [(&'static str, &'static str)],
}

const FOLLOWS: &[Follow] = &[
    Follow {
        from: "create_project",
        status: "201",
        to: "create_template",
        path_id: None,
        body: &[("project_id", "$response.body#/id")],
    },
    Follow {
        from: "create_project",
        status: "201",
        to: "create_api_key",
        path_id: None,
        body: &[("project_id", "$response.body#/id")],
    },
    Follow {
        from: "create_template",
        status: "201",
        to: "create_environment",
        path_id: None,
        body: &[
            ("project_id", "$response.body#/project_id"),
            ("template_id", "$response.body#/id"),
        ],
    },
    Follow {
        from: "create_environment",
        status: "201",
        to: "create_deployment",
        path_id: Some("$response.body#/id"),
        body: &[],
    },
    Follow {
        from: "create_deployment",
        status: "202",
        to: "get_deployment",
        path_id: Some("$response.body#/id"),
        body: &[],
    },
    Follow {
        from: "create_deployment",
        status: "202",
        to: "deployment_logs",
        path_id: Some("$response.body#/id"),
        body: &[],
    },
    Follow {
        from: "create_deployment",
        status: "202",
        to: "approve_deployment",
        path_id: Some("$response.body#/id"),
        body: &[],
    },
    Follow {
        from: "create_deployment",
        status: "202",
        to: "reject_deployment",
        path_id: Some("$response.body#/id"),
        body: &[],
    },
    Follow {
        from: "create_deployment",
        status: "202",
        to: "cancel_deployment",
        path_id: Some("$response.body#/id"),
        body: &[],
    },
    Follow {
        from: "create_api_key",
        status: "201",
        to: "revoke_api_key",
        path_id: Some("$response.body#/id"),
        body: &[],
    },
    Follow {
        from: "create_notification_target",
        status: "201",
        to: "get_notification_target",
        path_id: Some("$response.body#/id"),
        body: &[],
    },
    Follow {
        from: "create_notification_target",
        status: "201",
        to: "delete_notification_target",
        path_id: Some("$response.body#/id"),
        body: &[],
    },
];

/// Adds the links that start at `operation`. They go in as the response's raw `links`
/// member: utoipa 5.5 writes its own `Link` with snake_case names (`operation_id`),
/// which OpenAPI validators refuse.
fn add_links(operation: &mut Operation) {
    let Some(id) = operation.operation_id.clone() else {
        return;
    };
    for follow in FOLLOWS.iter().filter(|follow| follow.from == id) {
        let Some(RefOr::T(response)) = operation.responses.responses.get_mut(follow.status) else {
            continue;
        };
        let mut link = json!({ "operationId": follow.to });
        if let Some(expression) = follow.path_id {
            link["parameters"] = json!({ "id": expression });
        }
        if !follow.body.is_empty() {
            let body: Map<String, Value> = follow
                .body
                .iter()
                .map(|(field, expression)| (field.to_string(), json!(expression)))
                .collect();
            link["requestBody"] = Value::Object(body);
        }
        let extensions = response.extensions.get_or_insert_with(Default::default);
        let links = extensions
            .entry("links".to_string())
            .or_insert_with(|| json!({}));
        links[follow.to] = link;
    }
}

/// The schema of a parameter that many routes share, by its name and place.
fn constrain(parameter: &mut Parameter) {
    let schema: Schema = match (&parameter.parameter_in, parameter.name.as_str()) {
        (ParameterIn::Query, "limit") => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(MAX_PAGE_SIZE as u64))
            .into(),
        (ParameterIn::Query, "cursor") => CURSOR.schema().into(),
        (ParameterIn::Query, "after") => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(u64::MAX))
            .into(),
        (ParameterIn::Query, _) if is_flag(parameter) => {
            ObjectBuilder::new().schema_type(Type::Boolean).into()
        }
        (ParameterIn::Path, "name") => {
            parameter.description = Some(format!(
                "The variable's name. For a variable of kind `env`, `-` is refused too, and so \
                 are the names the runner reserves: {} (`*` stands for any text).",
                reserved_environment_names()
            ));
            VARIABLE_NAME.schema().into()
        }
        _ => return,
    };
    parameter.schema = Some(RefOr::T(schema));
}

/// A `true`/`false` query parameter (`force`, `effective`): never `null` in a query.
fn is_flag(parameter: &Parameter) -> bool {
    let Some(RefOr::T(Schema::Object(object))) = &parameter.schema else {
        return false;
    };
    match &object.schema_type {
        SchemaType::Type(kind) => *kind == Type::Boolean,
        SchemaType::Array(kinds) => kinds.contains(&Type::Boolean),
        SchemaType::AnyValue => false,
    }
}

/// Whether the operation needs no key: its only security requirement is the empty one.
fn is_public(operation: &Operation) -> bool {
    operation.security.as_ref().is_some_and(|requirements| {
        serde_json::to_value(requirements).is_ok_and(|value| value == json!([{}]))
    })
}

/// Every error answer the operation can give, each with the error body: what the
/// extractors refuse (400, 413, 415, 422), who may call (401, 403), what is missing
/// (404), a write that lost a race or breaks a rule (409), the store failing (500), and
/// a write sent to a passive region (503).
fn declare_errors(operation: &mut Operation, writes: bool) {
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has_path = parameters
        .iter()
        .any(|parameter| matches!(parameter.parameter_in, ParameterIn::Path));
    let has_body = operation.request_body.is_some();
    let mut errors = vec![(
        "500",
        "The platform failed; the details are in its log, not here.",
    )];
    if !is_public(operation) {
        errors.push(("401", "No API key, or one that is unknown or revoked."));
        errors.push(("403", "The key's role or project does not allow this."));
    }
    if !parameters.is_empty() || has_body {
        errors.push(("400", "The path, query or body cannot be read."));
        errors.push(("422", "A value breaks a rule the message names."));
    }
    if has_path || has_body {
        errors.push((
            "404",
            "No such object (or one the body names) in the caller's organization.",
        ));
    }
    if has_body {
        errors.push(("413", "The body is larger than 1 MiB."));
        errors.push(("415", "The body is not sent as application/json."));
    }
    if writes {
        errors.push((
            "409",
            "The object changed meanwhile, or the change conflicts with its state.",
        ));
        errors.push((
            "503",
            "This region is passive (`region_passive`): the message names the active one.",
        ));
    }
    for (status, description) in errors {
        let response = ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert(RefOr::T(response));
    }
}
