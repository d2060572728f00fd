//! `envplane audit`: who did what, newest first.

use envplane_core::model::AuditEvent;

use super::http::{ApiClient, Paging};
use super::output::{self, Format, Render};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    paging: Paging,
}

pub async fn run(api: &ApiClient, format: Format, args: Args) -> anyhow::Result<()> {
    let listing = api.list(&["v1", "audit-events"], &[], &args.paging).await?;
    output::print_list::<AuditEvent>(format, listing)
}

impl Render for AuditEvent {
    const COLUMNS: &'static [&'static str] = &["at", "actor", "action", "target"];

    fn row(&self) -> Vec<String> {
        vec![
            output::timestamp(&self.at),
            self.actor_name.clone(),
            self.action.clone(),
            format!("{} {}", self.target_kind, self.target_id),
        ]
    }
}
