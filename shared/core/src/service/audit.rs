use crate::auth::{Caller, Role};
use crate::ids::new_id;
use crate::model::{AuditEvent, Listing};
use crate::ports::{Kind, WriteOp};
use crate::Result;

use super::{record, PageRequest, Platform, Stored};

impl Stored for AuditEvent {
    const KIND: Kind = Kind::AuditEvent;
    const NOUN: &'static str = "audit event";
}

impl Platform {
    /// The insert of one audit event in `org_id`, to be committed with the change it records.
    pub(super) fn audit_event(
        &self,
        caller: &Caller,
        org_id: &str,
        action: &str,
        (target_kind, target_id): (Kind, &str),
    ) -> WriteOp {
        audit_insert(
            org_id,
            AuditEvent {
                id: new_id("aud"),
                actor_key_id: caller.key_id.clone(),
                actor_name: caller.key_name.clone(),
                action: action.to_string(),
                target_kind: target_kind.as_str().to_string(),
                target_id: target_id.to_string(),
                request_id: caller.request_id.clone(),
                client_request_id: caller.client_request_id.clone(),
                at: self.now(),
            },
        )
    }

    /// The audit event of a webhook delivery that queued deployments: the host's user
    /// who pushed or commented is the actor, the delivery id the request id.
    pub(super) fn webhook_audit_event(
        &self,
        org_id: &str,
        actor: &str,
        action: &str,
        target: (&str, &str),
        delivery_id: &str,
    ) -> WriteOp {
        let actor = (format!("github:{actor}"), format!("{actor} (GitHub)"));
        self.automation_audit_event(org_id, actor, action, target, delivery_id)
    }

    /// The audit event of a deployment a scheduled job queued: the scheduler is the
    /// actor, the job's due run the request id.
    pub(super) fn scheduler_audit_event(
        &self,
        org_id: &str,
        action: &str,
        deployment_id: &str,
        due_run: &str,
    ) -> WriteOp {
        let actor = ("scheduler".to_string(), "envplane scheduler".to_string());
        let target = (Kind::Deployment.as_str(), deployment_id);
        self.automation_audit_event(org_id, actor, action, target, due_run)
    }

    /// An audit event whose actor is no API key.
    fn automation_audit_event(
        &self,
        org_id: &str,
        (actor_key_id, actor_name): (String, String),
        action: &str,
        (target_kind, target_id): (&str, &str),
        request_id: &str,
    ) -> WriteOp {
        audit_insert(
            org_id,
            AuditEvent {
                id: new_id("aud"),
                actor_key_id,
                actor_name,
                action: action.to_string(),
                target_kind: target_kind.to_string(),
                target_id: target_id.to_string(),
                request_id: request_id.to_string(),
                client_request_id: None,
                at: self.now(),
            },
        )
    }

    /// The organization's audit log, newest first. Admins only.
    pub async fn list_audit_events(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Listing<AuditEvent>> {
        caller.require(Role::Admin, None)?;
        self.page(&caller.org_id, None, page, true).await
    }
}

fn audit_insert(org_id: &str, event: AuditEvent) -> WriteOp {
    let record =
        record(org_id, &event.id, None, None, &event).expect("an audit event always serializes");
    WriteOp::Insert(record)
}
