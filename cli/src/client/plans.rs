//! `envplane plan show`: a deployment's plan as Terraform prints it, priced, without its
//! sensitive values.

use envplane_core::cost::CostEstimate;

use super::http::ApiClient;
use super::output::{self, Format};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print a deployment's latest plan: Terraform's text and its cost estimate, or with
    /// `--output json` the whole answer (its summary, `terraform show -json` with
    /// sensitive values removed, and the estimate resource by resource).
    Show {
        #[arg(value_name = "DEPLOYMENT_ID")]
        id: String,
    },
}

pub async fn run(api: &ApiClient, format: Format, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Show { id } => {
            let mut plan = api.get(&["v1", "deployments", &id, "plan"]).await?;
            match format {
                Format::Json => output::print_json(&plan),
                Format::Table => {
                    print!("{}", plan["text"].as_str().unwrap_or_default());
                    let estimate: CostEstimate =
                        serde_json::from_value(plan["cost_estimate"].take())?;
                    println!("\n{}", cost_table(&estimate));
                }
            }
            Ok(())
        }
    }
}

/// The estimate under the plan: its headline, then a line per resource.
fn cost_table(estimate: &CostEstimate) -> String {
    let money = |amount: Option<f64>| amount.map_or("-".to_string(), |a| format!("{a:.2}"));
    let mut lines = vec![format!(
        "Estimated cost (price catalog {}): {}",
        estimate.catalog_version,
        estimate.summary().headline()
    )];
    for resource in &estimate.resources {
        let detail = match (&resource.unpriced, &resource.note) {
            (Some(why), _) => format!("not priced: {why}"),
            (None, Some(note)) => note.clone(),
            (None, None) => String::new(),
        };
        lines.push(format!(
            "  {}  {} → {}  {detail}",
            resource.address,
            money(resource.monthly_before),
            money(resource.monthly_after)
        ));
    }
    lines.join("\n")
}
