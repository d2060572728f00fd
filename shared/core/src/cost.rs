//! Cost estimates: a plan's resources priced from a catalog of public list prices kept in
//! the repository (`prices/aws.json`), per resource and in total, as they are and as the
//! plan leaves them. Nothing is fetched and nothing is guessed: a resource the catalog
//! cannot price is listed as unpriced, with the reason, and left out of the totals.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use serde::{Deserialize, Deserializer, Serialize};

use crate::deployment::{Action, Deployment, DeploymentStatus};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Money is counted in billionths of a dollar, so that $0.0001586 an hour is exact.
type Nanos = i128;

const NANOS_PER_CENT: Nanos = 10_000_000;

/// What the runner's plan view writes in place of a value Terraform marks sensitive.
const SENSITIVE: &str = "(sensitive value)";

/// The largest size, capacity or IOPS count priced; more is a typo, not a plan.
const MAX_QUANTITY: u64 = 1 << 40;

/// What a gp3 volume includes before its IOPS and throughput are charged for.
const GP3_FREE_IOPS: u64 = 3_000;
const GP3_FREE_THROUGHPUT: u64 = 125;

const USAGE_BASED: &str = "usage-based: no base price";

/// Why an alias, or a price catalog, is refused.
#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error("alias {0:?} is not FROM=TO, such as testcloud_instance=aws_instance")]
    AliasSyntax(String),
    #[error(
        "{0:?} is not a resource type: lowercase letters, digits and underscores, \
         starting with a letter"
    )]
    TypeName(String),
    #[error("{0} is priced by the catalog itself and cannot be priced as another type")]
    AlreadyPriced(String),
    #[error(
        "{0} is not a type the price catalog prices; it prices {types}",
        types = priced_types()
    )]
    NotPriced(String),
    #[error("the price catalog is not valid: {0}")]
    Catalog(String),
}

/// The catalog compiled into the binary, parsed on first use.
pub fn catalog() -> &'static PriceCatalog {
    static CATALOG: LazyLock<PriceCatalog> = LazyLock::new(|| {
        PriceCatalog::parse(include_str!("../prices/aws.json"))
            .expect("the built-in price catalog is valid")
    });
    &CATALOG
}

/// List prices by region, as of one version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceCatalog {
    version: String,
    currency: String,
    hours_per_month: u16,
    description: Vec<String>,
    /// The `aws_db_instance` engines whose price the RDS instance prices are.
    rds_engines: BTreeSet<String>,
    regions: BTreeMap<String, RegionPrices>,
}

impl PriceCatalog {
    pub fn parse(json: &str) -> Result<Self, CostError> {
        let catalog: Self =
            serde_json::from_str(json).map_err(|e| CostError::Catalog(e.to_string()))?;
        if !(1..=744).contains(&catalog.hours_per_month) {
            return Err(CostError::Catalog(format!(
                "hours_per_month {} is not between 1 and 744",
                catalog.hours_per_month
            )));
        }
        if catalog.regions.is_empty() || catalog.currency.is_empty() {
            return Err(CostError::Catalog(
                "a catalog names its currency and at least one region".into(),
            ));
        }
        Ok(catalog)
    }

    /// The date the prices were list prices on, such as `2026-12-01`.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// Hours a month of an hourly price is (730: a year's 8,760 over 12).
    pub fn hours_per_month(&self) -> u16 {
        self.hours_per_month
    }

    /// What the prices are and what they leave out.
    pub fn description(&self) -> &[String] {
        &self.description
    }

    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.regions.keys().map(String::as_str)
    }
}

/// One region's prices, each in dollars per the unit its name ends in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionPrices {
    ec2_instance_hourly: BTreeMap<String, Price>,
    ebs_volume_gb_month: BTreeMap<String, Price>,
    /// Per provisioned IOPS of an io1 or io2 volume.
    ebs_iops_month: BTreeMap<String, Price>,
    /// Per IOPS of a gp3 volume above the 3,000 it includes.
    ebs_gp3_iops_month: Price,
    /// Per MiB/s of a gp3 volume above the 125 it includes.
    ebs_gp3_throughput_month: Price,
    rds_instance_hourly: BTreeMap<String, Price>,
    rds_storage_gb_month: BTreeMap<String, Price>,
    rds_iops_month: BTreeMap<String, Price>,
    nat_gateway_hourly: Price,
    load_balancer_hourly: BTreeMap<String, Price>,
    public_ipv4_hourly: Price,
    dynamodb_rcu_hourly: Price,
    dynamodb_wcu_hourly: Price,
}

/// A price in nanodollars, written in the catalog in dollars with at most nine decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Price(Nanos);

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let dollars = f64::deserialize(deserializer)?;
        let nanos = (dollars * 1e9).round();
        let exact = ((dollars * 1e9) - nanos).abs() < 1e-3;
        if !(0.0..=1e6).contains(&dollars) || !exact {
            return Err(serde::de::Error::custom(format!(
                "{dollars} is not a price in dollars of at most 1,000,000 with at most 9 decimals"
            )));
        }
        Ok(Self(nanos as Nanos))
    }
}

/// What the operator configures: resource types priced as a catalog type (a test
/// provider's `testcloud_instance` as an `aws_instance`), and the region to price in
/// when the plan does not say.
#[derive(Debug, Clone, Default)]
pub struct PricingRules {
    pub aliases: BTreeMap<String, String>,
    pub default_region: Option<String>,
}

impl PricingRules {
    /// Reads one alias as the CLI takes it: `FROM=TO`, such as
    /// `testcloud_instance=aws_instance`, where TO is a type the catalog prices. The
    /// resource of type FROM is read with TO's attribute names (`instance_type`, `size`).
    pub fn alias(spec: &str) -> Result<(String, String), CostError> {
        let (from, to) = spec
            .split_once('=')
            .ok_or_else(|| CostError::AliasSyntax(spec.into()))?;
        let (from, to) = (from.trim(), to.trim());
        for name in [from, to] {
            let mut chars = name.chars();
            let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
            if !starts_with_letter
                || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(CostError::TypeName(name.into()));
            }
        }
        if kind_of(from).is_some() {
            return Err(CostError::AlreadyPriced(from.into()));
        }
        if kind_of(to).is_none() {
            return Err(CostError::NotPriced(to.into()));
        }
        Ok((from.into(), to.into()))
    }
}

/// A plan priced: what the priced resources cost a month now and once it is applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CostEstimate {
    #[schema(example = "USD")]
    pub currency: String,
    /// The version (date) of the price catalog used.
    #[schema(example = "2026-12-01")]
    pub catalog_version: String,
    /// What the priced resources cost a month now, rounded to cents.
    pub monthly_before: f64,
    /// What they cost a month once the plan is applied.
    pub monthly_after: f64,
    /// `monthly_after - monthly_before`, computed before rounding.
    pub monthly_delta: f64,
    /// Every managed resource in the plan, in the plan's order.
    pub resources: Vec<ResourceCost>,
    /// Addresses of the resources not priced (unknown type or region, values known only
    /// after apply): the totals leave them out, so they are lower bounds.
    pub unpriced: Vec<String>,
}

/// A plan's estimate in brief, as its deployment shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CostSummary {
    #[schema(example = "USD")]
    pub currency: String,
    pub monthly_before: f64,
    pub monthly_after: f64,
    pub monthly_delta: f64,
    /// Resources left out of the totals (`GET /v1/deployments/{id}/plan` names them).
    pub unpriced: usize,
}

impl CostEstimate {
    pub fn summary(&self) -> CostSummary {
        CostSummary {
            currency: self.currency.clone(),
            monthly_before: self.monthly_before,
            monthly_after: self.monthly_after,
            monthly_delta: self.monthly_delta,
            unpriced: self.unpriced.len(),
        }
    }
}

impl CostSummary {
    /// `USD 7.59 → 60.74 a month (+53.14)`, and how many resources are not priced.
    pub fn headline(&self) -> String {
        let mut line = format!(
            "{} {:.2} → {:.2} a month ({:+.2})",
            self.currency, self.monthly_before, self.monthly_after, self.monthly_delta
        );
        if self.unpriced > 0 {
            line.push_str(&format!(", {} resource(s) not priced", self.unpriced));
        }
        line
    }
}

/// What an environment's resources cost a month, as its last successful apply
/// estimated them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CurrentCost {
    #[schema(example = "USD")]
    pub currency: String,
    pub monthly: f64,
    /// Resources left out (unknown type or region): the amount is a lower bound.
    pub unpriced: usize,
    /// The apply whose plan it comes from.
    pub deployment_id: String,
}

impl CurrentCost {
    /// What the environment costs after `ended`: a successful apply's plan; nothing
    /// after a destroy. `None`: its end changes nothing.
    pub fn after(ended: &Deployment) -> Option<Option<CurrentCost>> {
        if ended.status != DeploymentStatus::Succeeded {
            return None;
        }
        match ended.action {
            Action::Apply => Some(ended.cost_estimate.as_ref().map(|estimate| CurrentCost {
                currency: estimate.currency.clone(),
                monthly: estimate.monthly_after,
                unpriced: estimate.unpriced,
                deployment_id: ended.id.clone(),
            })),
            Action::Destroy => Some(None),
            Action::Plan => None,
        }
    }
}

/// One resource of a plan priced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourceCost {
    #[schema(example = "aws_instance.web")]
    pub address: String,
    #[schema(example = "aws_instance")]
    pub resource_type: String,
    /// The catalog type it was priced as, when an alias says so.
    pub priced_as: Option<String>,
    pub region: Option<String>,
    /// A month of it now; null when it does not exist yet or is not priced.
    pub monthly_before: Option<f64>,
    /// A month of it once the plan is applied; null when the plan destroys it or it is
    /// not priced.
    pub monthly_after: Option<f64>,
    /// Why it is not priced.
    pub unpriced: Option<String>,
    /// What the price leaves out or assumes, such as "usage-based: no base price".
    pub note: Option<String>,
}

/// Prices every managed resource of `plan` (`terraform show -json` of a plan file, as
/// the runner keeps it) in `catalog`.
pub fn estimate(plan: &Value, catalog: &PriceCatalog, rules: &PricingRules) -> CostEstimate {
    let providers = Providers {
        configs: plan["configuration"]["provider_config"].as_object(),
        variables: &plan["variables"],
    };
    let lines: Vec<Line> = plan["resource_changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|change| change["mode"] == "managed")
        .filter_map(|change| price_change(change, &providers, catalog, rules))
        .collect();
    let before: Nanos = lines.iter().filter_map(|line| line.before).sum();
    let after: Nanos = lines.iter().filter_map(|line| line.after).sum();
    CostEstimate {
        currency: catalog.currency.clone(),
        catalog_version: catalog.version.clone(),
        monthly_before: usd(before),
        monthly_after: usd(after),
        monthly_delta: usd(after - before),
        unpriced: lines
            .iter()
            .filter(|line| line.cost.unpriced.is_some())
            .map(|line| line.cost.address.clone())
            .collect(),
        resources: lines.into_iter().map(|line| line.cost).collect(),
    }
}

/// Nanodollars as dollars rounded to cents (half away from zero).
fn usd(nanos: Nanos) -> f64 {
    let cents = (nanos + nanos.signum() * NANOS_PER_CENT / 2) / NANOS_PER_CENT;
    cents as f64 / 100.0
}

/// A resource priced, with its exact amounts for the totals.
struct Line {
    cost: ResourceCost,
    before: Option<Nanos>,
    after: Option<Nanos>,
}

/// Why a resource is not priced.
#[derive(Debug)]
struct Unpriced(String);

/// A month of one side of a resource, and what its price leaves out or assumes.
struct Cost {
    monthly: Nanos,
    notes: Vec<String>,
}

impl Cost {
    fn of(monthly: Nanos) -> Self {
        Self {
            monthly,
            notes: Vec::new(),
        }
    }

    fn noted(monthly: Nanos, note: &str) -> Self {
        Self {
            monthly,
            notes: vec![note.into()],
        }
    }
}

fn price_change(
    change: &Value,
    providers: &Providers,
    catalog: &PriceCatalog,
    rules: &PricingRules,
) -> Option<Line> {
    let address = change["address"].as_str()?;
    let resource_type = change["type"].as_str()?;
    let detail = &change["change"];
    let actions: Vec<&str> = detail["actions"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let exists_now = !matches!(actions[..], ["create"]);
    let exists_after = !matches!(actions[..], ["delete"] | ["forget"]);
    let alias = rules.aliases.get(resource_type);
    let catalog_type = alias.map_or(resource_type, String::as_str);
    let region = providers.region_of(change, rules);
    let mut cost = ResourceCost {
        address: match change["deposed"].as_str() {
            Some(key) => format!("{address} (deposed object {key})"),
            None => address.into(),
        },
        resource_type: resource_type.into(),
        priced_as: alias.cloned(),
        region: region.as_ref().ok().cloned(),
        monthly_before: None,
        monthly_after: None,
        unpriced: None,
        note: None,
    };
    let sides = kind_of(catalog_type)
        .ok_or_else(|| Unpriced(format!("{catalog_type} is not in the price catalog")))
        .and_then(|kind| {
            let pricer = Pricer::new(kind, catalog, region)?;
            let before = exists_now
                .then(|| pricer.price(side(detail, "before")?))
                .transpose()?
                .flatten();
            let after = exists_after
                .then(|| pricer.price(side(detail, "after")?))
                .transpose()?
                .flatten();
            Ok((before, after))
        });
    let (before, after) = match sides {
        Ok(sides) => sides,
        Err(Unpriced(reason)) => {
            cost.unpriced = Some(reason);
            return Some(Line {
                cost,
                before: None,
                after: None,
            });
        }
    };
    let notes: BTreeSet<String> = before
        .iter()
        .chain(after.iter())
        .flat_map(|side| side.notes.iter().cloned())
        .collect();
    cost.note = (!notes.is_empty()).then(|| notes.into_iter().collect::<Vec<_>>().join("; "));
    cost.monthly_before = before.as_ref().map(|side| usd(side.monthly));
    cost.monthly_after = after.as_ref().map(|side| usd(side.monthly));
    Some(Line {
        cost,
        before: before.map(|side| side.monthly),
        after: after.map(|side| side.monthly),
    })
}

/// The values of a change's `before` or `after`, or none when there are none.
fn side<'a>(detail: &'a Value, which: &str) -> Result<Option<Values<'a>>, Unpriced> {
    static NONE_UNKNOWN: Value = Value::Null;
    match &detail[which] {
        Value::Null => Ok(None),
        Value::Object(values) => Ok(Some(Values {
            values,
            unknown: match which {
                "after" => &detail["after_unknown"],
                _ => &NONE_UNKNOWN,
            },
        })),
        _ => Err(Unpriced(
            "its values are withheld from the plan as sensitive".into(),
        )),
    }
}

/// The resource kinds the catalog prices, by the type that has them.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Instance,
    EbsVolume,
    DbInstance,
    NatGateway,
    LoadBalancer,
    PublicIp,
    DynamoDbTable,
    /// Billed only by use (requests, storage): no base price.
    UsageBased,
}

const PRICED_TYPES: [(&str, Kind); 10] = [
    ("aws_instance", Kind::Instance),
    ("aws_ebs_volume", Kind::EbsVolume),
    ("aws_db_instance", Kind::DbInstance),
    ("aws_nat_gateway", Kind::NatGateway),
    ("aws_lb", Kind::LoadBalancer),
    ("aws_alb", Kind::LoadBalancer),
    ("aws_eip", Kind::PublicIp),
    ("aws_dynamodb_table", Kind::DynamoDbTable),
    ("aws_lambda_function", Kind::UsageBased),
    ("aws_s3_bucket", Kind::UsageBased),
];

fn priced_types() -> String {
    PRICED_TYPES.map(|(name, _)| name).join(", ")
}

fn kind_of(resource_type: &str) -> Option<Kind> {
    PRICED_TYPES
        .iter()
        .find(|(name, _)| *name == resource_type)
        .map(|(_, kind)| *kind)
}

/// One side of a change: its values and, on the planned side, which of them are known
/// only after apply.
#[derive(Clone, Copy)]
struct Values<'a> {
    values: &'a Map<String, Value>,
    unknown: &'a Value,
}

impl<'a> Values<'a> {
    fn is_unknown(&self, key: &str) -> bool {
        self.unknown.get(key) == Some(&Value::Bool(true))
    }

    /// `key`'s value; none when it is not set.
    fn get(&self, key: &str) -> Result<Option<&'a Value>, Unpriced> {
        if self.is_unknown(key) {
            return Err(Unpriced(format!(
                "depends on values known only after apply: {key}"
            )));
        }
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) if text == SENSITIVE => Err(Unpriced(format!(
                "{key} is sensitive and withheld from the plan"
            ))),
            Some(value) => Ok(Some(value)),
        }
    }

    fn text(&self, key: &str) -> Result<Option<&'a str>, Unpriced> {
        match self.get(key)? {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(Unpriced(format!("{key} {other} is not a string"))),
        }
    }

    fn required_text(&self, key: &str) -> Result<&'a str, Unpriced> {
        self.text(key)?
            .ok_or_else(|| Unpriced(format!("{key} is not set")))
    }

    /// `key`'s text, or `default` when it is not set or, for an attribute AWS fills in
    /// when the configuration leaves it out, when it is known only after apply; the
    /// latter is noted.
    fn text_or_default(
        &self,
        key: &str,
        default: &'static str,
        notes: &mut Vec<String>,
    ) -> Result<&'a str, Unpriced> {
        if self.is_unknown(key) {
            notes.push(format!(
                "{key} is known only after apply: priced as {default}, AWS's default"
            ));
            return Ok(default);
        }
        Ok(self.text(key)?.unwrap_or(default))
    }

    /// A whole number such as a size or a capacity.
    fn count(&self, key: &str) -> Result<Option<u64>, Unpriced> {
        let Some(value) = self.get(key)? else {
            return Ok(None);
        };
        let count = value.as_u64().or_else(|| {
            value
                .as_f64()
                .filter(|number| number.fract() == 0.0 && (0.0..=1e15).contains(number))
                .map(|number| number as u64)
        });
        match count {
            Some(count) if count <= MAX_QUANTITY => Ok(Some(count)),
            Some(count) => Err(Unpriced(format!("{key} {count} is too large to price"))),
            None => Err(Unpriced(format!("{key} {value} is not a whole number"))),
        }
    }

    fn required_count(&self, key: &str) -> Result<u64, Unpriced> {
        self.count(key)?
            .ok_or_else(|| Unpriced(format!("{key} is not set")))
    }

    /// A count AWS fills in when the configuration leaves it out: none when it is not
    /// set or known only after apply.
    fn count_if_known(&self, key: &str) -> Result<Option<u64>, Unpriced> {
        if self.is_unknown(key) {
            return Ok(None);
        }
        self.count(key)
    }

    fn flag(&self, key: &str) -> Result<Option<bool>, Unpriced> {
        match self.get(key)? {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(other) => Err(Unpriced(format!("{key} {other} is not true or false"))),
        }
    }

    /// The blocks of a nested block type, such as a table's indexes.
    fn blocks(&self, key: &str) -> Result<Vec<Values<'a>>, Unpriced> {
        static NONE_UNKNOWN: Value = Value::Null;
        let Some(value) = self.get(key)? else {
            return Ok(Vec::new());
        };
        let Some(items) = value.as_array() else {
            return Err(Unpriced(format!("{key} is not a list of blocks")));
        };
        items
            .iter()
            .enumerate()
            .map(|(at, item)| match item {
                Value::Object(values) => Ok(Values {
                    values,
                    unknown: self
                        .unknown
                        .get(key)
                        .and_then(|unknown| unknown.get(at))
                        .unwrap_or(&NONE_UNKNOWN),
                }),
                _ => Err(Unpriced(format!("{key} is not a list of blocks"))),
            })
            .collect()
    }
}

/// `name`'s price in `prices`, or why it has none.
fn listed(prices: &BTreeMap<String, Price>, what: &str, name: &str) -> Result<Nanos, Unpriced> {
    prices
        .get(name)
        .map(|price| price.0)
        .ok_or_else(|| Unpriced(format!("{what} {name} is not in the price catalog")))
}

/// Prices one kind of resource in one region.
struct Pricer<'a> {
    kind: Kind,
    catalog: &'a PriceCatalog,
    /// None for a kind whose price does not depend on the region.
    prices: Option<&'a RegionPrices>,
}

impl<'a> Pricer<'a> {
    fn new(
        kind: Kind,
        catalog: &'a PriceCatalog,
        region: Result<String, Unpriced>,
    ) -> Result<Self, Unpriced> {
        let prices = match kind {
            Kind::UsageBased => None,
            _ => {
                let region = region?;
                let prices = catalog.regions.get(&region).ok_or_else(|| {
                    Unpriced(format!("region {region} is not in the price catalog"))
                })?;
                Some(prices)
            }
        };
        Ok(Self {
            kind,
            catalog,
            prices,
        })
    }

    /// A month of an hourly price.
    fn hours(&self, hourly: Nanos) -> Nanos {
        hourly * Nanos::from(self.catalog.hours_per_month)
    }

    fn price(&self, values: Option<Values>) -> Result<Option<Cost>, Unpriced> {
        let Some(values) = values else {
            return Ok(None);
        };
        let Some(prices) = self.prices else {
            return Ok(Some(Cost::noted(0, USAGE_BASED)));
        };
        let cost = match self.kind {
            Kind::Instance => self.instance(prices, values)?,
            Kind::EbsVolume => ebs_volume(prices, values)?,
            Kind::DbInstance => self.db_instance(prices, values)?,
            Kind::NatGateway => Cost::noted(
                self.hours(prices.nat_gateway_hourly.0),
                "hourly charge only: data processed is usage-based",
            ),
            Kind::LoadBalancer => {
                let kind = values.text("load_balancer_type")?.unwrap_or("application");
                let hourly = listed(&prices.load_balancer_hourly, "load_balancer_type", kind)?;
                Cost::noted(
                    self.hours(hourly),
                    "hourly charge only: capacity units (LCUs) are usage-based",
                )
            }
            Kind::PublicIp => Cost::of(self.hours(prices.public_ipv4_hourly.0)),
            Kind::DynamoDbTable => self.dynamodb_table(prices, values)?,
            Kind::UsageBased => Cost::noted(0, USAGE_BASED),
        };
        Ok(Some(cost))
    }

    fn instance(&self, prices: &RegionPrices, values: Values) -> Result<Cost, Unpriced> {
        // Left out of the configuration, the tenancy is unknown until apply and is the
        // VPC's, which is shared but for the rare dedicated VPC.
        if !values.is_unknown("tenancy") {
            if let Some(tenancy) = values.text("tenancy")?.filter(|t| *t != "default") {
                return Err(Unpriced(format!(
                    "tenancy {tenancy} is not in the price catalog"
                )));
            }
        }
        let instance_type = values.required_text("instance_type")?;
        let hourly = listed(&prices.ec2_instance_hourly, "instance type", instance_type)?;
        Ok(Cost::of(self.hours(hourly)))
    }

    fn db_instance(&self, prices: &RegionPrices, values: Values) -> Result<Cost, Unpriced> {
        let mut notes = Vec::new();
        if let Some(engine) = values.text("engine")? {
            if !self.catalog.rds_engines.contains(engine) {
                return Err(Unpriced(format!(
                    "engine {engine} is not in the price catalog"
                )));
            }
        }
        let class = values.required_text("instance_class")?;
        let hourly = listed(&prices.rds_instance_hourly, "instance class", class)?;
        // AWS's default storage type is io1 when IOPS are given, gp2 otherwise.
        let iops_given = !values.is_unknown("iops") && values.get("iops")?.is_some();
        let default_storage = if iops_given { "io1" } else { "gp2" };
        let storage_type = values.text_or_default("storage_type", default_storage, &mut notes)?;
        let per_gb = listed(&prices.rds_storage_gb_month, "storage type", storage_type)?;
        let storage = values.required_count("allocated_storage")?;
        let mut monthly = self.hours(hourly) + per_gb * Nanos::from(storage);
        if let Ok(per_iops) = listed(&prices.rds_iops_month, "storage type", storage_type) {
            monthly += per_iops * Nanos::from(values.count("iops")?.unwrap_or(0));
        }
        let multi_az = if values.is_unknown("multi_az") {
            notes
                .push("multi_az is known only after apply: priced single-AZ, AWS's default".into());
            false
        } else {
            values.flag("multi_az")?.unwrap_or(false)
        };
        if multi_az {
            monthly *= 2;
        }
        Ok(Cost { monthly, notes })
    }

    fn dynamodb_table(&self, prices: &RegionPrices, values: Values) -> Result<Cost, Unpriced> {
        match values.text("billing_mode")?.unwrap_or("PROVISIONED") {
            "PAY_PER_REQUEST" => return Ok(Cost::noted(0, USAGE_BASED)),
            "PROVISIONED" => {}
            other => {
                return Err(Unpriced(format!(
                    "billing_mode {other} is not in the price catalog"
                )))
            }
        }
        if !values.blocks("replica")?.is_empty() {
            return Err(Unpriced(
                "replicas (global tables) are not in the price catalog".into(),
            ));
        }
        let mut reads = values.required_count("read_capacity")?;
        let mut writes = values.required_count("write_capacity")?;
        for index in values.blocks("global_secondary_index")? {
            reads += index.count("read_capacity")?.unwrap_or(0);
            writes += index.count("write_capacity")?.unwrap_or(0);
        }
        let hourly = prices.dynamodb_rcu_hourly.0 * Nanos::from(reads)
            + prices.dynamodb_wcu_hourly.0 * Nanos::from(writes);
        Ok(Cost::noted(
            self.hours(hourly),
            "provisioned capacity only: storage is usage-based",
        ))
    }
}

fn ebs_volume(prices: &RegionPrices, values: Values) -> Result<Cost, Unpriced> {
    let mut notes = Vec::new();
    let volume_type = values.text_or_default("type", "gp2", &mut notes)?;
    let per_gb = listed(&prices.ebs_volume_gb_month, "volume type", volume_type)?;
    let mut monthly = per_gb * Nanos::from(values.required_count("size")?);
    if let Ok(per_iops) = listed(&prices.ebs_iops_month, "volume type", volume_type) {
        monthly += per_iops * Nanos::from(values.count("iops")?.unwrap_or(0));
    }
    if volume_type == "gp3" {
        // Left out, they are the included baseline (and unknown until apply).
        let iops = values.count_if_known("iops")?.unwrap_or(GP3_FREE_IOPS);
        let throughput = values
            .count_if_known("throughput")?
            .unwrap_or(GP3_FREE_THROUGHPUT);
        monthly += prices.ebs_gp3_iops_month.0 * Nanos::from(iops.saturating_sub(GP3_FREE_IOPS))
            + prices.ebs_gp3_throughput_month.0
                * Nanos::from(throughput.saturating_sub(GP3_FREE_THROUGHPUT));
    }
    Ok(Cost { monthly, notes })
}

/// The provider configurations of a plan, to find the region a resource is in.
struct Providers<'a> {
    /// `configuration.provider_config`: keyed `aws`, `aws.west`, `module.net:aws`.
    configs: Option<&'a Map<String, Value>>,
    variables: &'a Value,
}

impl Providers<'_> {
    /// The region of the resource `change` is of: its provider configuration's `region`,
    /// a constant or a root variable; when there is none, the operator's default.
    fn region_of(&self, change: &Value, rules: &PricingRules) -> Result<String, Unpriced> {
        let provider = change["provider_name"].as_str().unwrap_or_default();
        let module = change["module_address"]
            .as_str()
            .map(without_instance_keys)
            .unwrap_or_default();
        let configured = match self.config_for(provider, &module)? {
            Some((key, config)) => self.configured_region(key, config)?,
            None => None,
        };
        configured
            .or_else(|| rules.default_region.clone())
            .ok_or_else(|| {
                Unpriced(
                    "region unknown: the plan does not say and no default region is configured"
                        .into(),
                )
            })
    }

    /// The configuration of `provider` (`registry.terraform.io/hashicorp/aws`) in
    /// `module` or, as modules inherit them, the nearest module above it: the only one,
    /// or of several the default (un-aliased) one.
    fn config_for(&self, provider: &str, module: &str) -> Result<Option<(&str, &Value)>, Unpriced> {
        let Some(configs) = self.configs else {
            return Ok(None);
        };
        let type_name = provider.rsplit('/').next().unwrap_or(provider);
        let mut scope = Some(module);
        while let Some(module) = scope {
            let candidates: Vec<(&str, &str, &Value)> = configs
                .iter()
                .filter_map(|(key, config)| {
                    let (in_module, local) = key.rsplit_once(':').unwrap_or(("", key));
                    let name = config["name"]
                        .as_str()
                        .unwrap_or_else(|| local.split('.').next().unwrap_or(local));
                    let same_provider = match config["full_name"].as_str() {
                        Some(full_name) => full_name == provider,
                        None => name == type_name,
                    };
                    (in_module == module && same_provider).then_some((key.as_str(), local, config))
                })
                .collect();
            match candidates[..] {
                [] => {}
                [(key, _, config)] => return Ok(Some((key, config))),
                _ => {
                    return candidates
                        .iter()
                        .find(|(_, local, _)| !local.contains('.'))
                        .map(|(key, _, config)| Some((*key, *config)))
                        .ok_or_else(|| {
                            Unpriced(format!(
                                "region unknown: several {type_name} provider \
                                 configurations and none is the default"
                            ))
                        });
                }
            }
            scope = match module {
                "" => None,
                _ => Some(
                    module
                        .rsplit_once(".module.")
                        .map_or("", |(parent, _)| parent),
                ),
            };
        }
        Ok(None)
    }

    /// The `region` a provider configuration sets, when it sets one.
    fn configured_region(&self, key: &str, config: &Value) -> Result<Option<String>, Unpriced> {
        let expression = &config["expressions"]["region"];
        if expression.is_null() {
            return Ok(None);
        }
        if let Some(constant) = expression.get("constant_value") {
            return Ok(constant.as_str().map(Into::into));
        }
        let references: Vec<&str> = expression["references"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let unresolved = || {
            Unpriced(format!(
                "region unknown: provider {key} sets it from {} which the plan does not \
                 evaluate",
                match references[..] {
                    [] => "an expression".to_string(),
                    _ => references.join(", "),
                }
            ))
        };
        // `var.region` is referenced as ["var.region"]; `var.settings.region` as
        // ["var.settings.region", "var.settings"]. Only a root module's variables are in
        // the plan.
        let path = references
            .iter()
            .max_by_key(|reference| reference.len())
            .and_then(|longest| longest.strip_prefix("var."))
            .filter(|path| !key.contains(':') && !path.contains('['))
            .ok_or_else(&unresolved)?;
        let mut segments = path.split('.');
        let variable = segments.next().unwrap_or_default();
        let all_of_it = references.iter().all(|reference| {
            reference
                .strip_prefix("var.")
                .is_some_and(|name| name.split('.').next() == Some(variable))
        });
        if !all_of_it {
            return Err(unresolved());
        }
        let value = segments.try_fold(&self.variables[variable]["value"], |value, field| {
            value.get(field)
        });
        match value.and_then(Value::as_str) {
            Some(SENSITIVE) => Err(Unpriced(format!(
                "region unknown: variable {variable} is sensitive"
            ))),
            Some(region) => Ok(Some(region.into())),
            None => Err(unresolved()),
        }
    }
}

/// `module.net[0].module.db["a"]` as `module.net.module.db`, as provider configurations
/// are keyed.
fn without_instance_keys(address: &str) -> String {
    let mut path = String::with_capacity(address.len());
    let mut depth = 0;
    let mut quoted = false;
    for c in address.chars() {
        match c {
            '"' if depth > 0 => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth -= 1,
            _ if depth == 0 => path.push(c),
            _ => {}
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The AWS provider's `provider_name` in a plan.
    const AWS: &str = "registry.terraform.io/hashicorp/aws";

    fn rules() -> PricingRules {
        PricingRules::default()
    }

    /// A plan of `changes` whose one aws provider sets `region`.
    fn plan(region: Value, variables: Value, changes: Vec<Value>) -> Value {
        json!({
            "format_version": "1.2",
            "terraform_version": "1.9.8",
            "variables": variables,
            "resource_changes": changes,
            "resource_drift": [],
            "output_changes": {},
            "configuration": {
                "provider_config": {
                    "aws": {"name": "aws", "full_name": AWS, "expressions": {"region": region}}
                }
            }
        })
    }

    fn in_region(region: &str, changes: Vec<Value>) -> Value {
        plan(json!({"constant_value": region}), json!({}), changes)
    }

    fn plan_with_provider(provider_config: Value, variables: Value, changes: Vec<Value>) -> Value {
        json!({
            "format_version": "1.2",
            "variables": variables,
            "resource_changes": changes,
            "configuration": {"provider_config": provider_config}
        })
    }

    fn estimate_of(plan: &Value) -> CostEstimate {
        estimate(plan, catalog(), &rules())
    }

    fn change(address: &str, actions: &[&str], before: Value, after: Value) -> Value {
        change_with_unknown(address, actions, before, after, json!({}))
    }

    fn change_with_unknown(
        address: &str,
        actions: &[&str],
        before: Value,
        after: Value,
        after_unknown: Value,
    ) -> Value {
        let (resource_type, name) = address.split_once('.').unwrap();
        json!({
            "address": address,
            "mode": "managed",
            "type": resource_type,
            "name": name,
            "provider_name": AWS,
            "change": {
                "actions": actions,
                "before": before,
                "after": after,
                "after_unknown": after_unknown,
                "before_sensitive": if before.is_null() { json!(false) } else { json!({}) },
                "after_sensitive": if after.is_null() { json!(false) } else { json!({"tags": {}}) }
            }
        })
    }

    /// An instance as the AWS provider plans it: most attributes known only after apply.
    fn instance(instance_type: &str) -> (Value, Value) {
        (
            json!({
                "ami": "ami-0c1c30571d2dae5c9",
                "instance_type": instance_type,
                "tags": {"Name": "web"},
                "user_data_replace_on_change": false,
                "volume_tags": null
            }),
            json!({
                "arn": true, "id": true, "private_ip": true, "public_ip": true,
                "tenancy": true, "root_block_device": true, "tags": {}
            }),
        )
    }

    fn create_instance(address: &str, instance_type: &str) -> Value {
        let (after, unknown) = instance(instance_type);
        change_with_unknown(address, &["create"], Value::Null, after, unknown)
    }

    fn existing_instance(instance_type: &str) -> Value {
        json!({
            "ami": "ami-0c1c30571d2dae5c9",
            "arn": "arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0",
            "id": "i-0123456789abcdef0",
            "instance_type": instance_type,
            "tenancy": "default",
            "tags": {"Name": "web"}
        })
    }

    fn resource<'a>(estimate: &'a CostEstimate, address: &str) -> &'a ResourceCost {
        estimate
            .resources
            .iter()
            .find(|resource| resource.address == address)
            .unwrap_or_else(|| panic!("{address} is in the estimate"))
    }

    #[test]
    fn the_catalog_parses_and_every_region_prices_the_same_things() {
        let catalog = catalog();
        assert_eq!(catalog.currency(), "USD");
        assert_eq!(catalog.hours_per_month(), 730);
        let raw: Value = serde_json::from_str(include_str!("../prices/aws.json")).unwrap();
        let keys = |region: &Value| -> BTreeSet<String> {
            let mut keys = BTreeSet::new();
            for (group, prices) in region.as_object().unwrap() {
                keys.insert(group.clone());
                for name in prices
                    .as_object()
                    .into_iter()
                    .flat_map(|prices| prices.keys())
                {
                    keys.insert(format!("{group}.{name}"));
                }
            }
            keys
        };
        let regions = raw["regions"].as_object().unwrap();
        let first = keys(&regions["us-east-1"]);
        for (region, prices) in regions {
            assert_eq!(keys(prices), first, "{region} prices what us-east-1 does");
        }
        for region in ["us-east-1", "eu-west-1", "eu-central-1"] {
            let prices = &catalog.regions[region];
            for family in ["t3", "t3a", "t4g"] {
                for size in [
                    "nano", "micro", "small", "medium", "large", "xlarge", "2xlarge",
                ] {
                    assert!(prices
                        .ec2_instance_hourly
                        .contains_key(&format!("{family}.{size}")));
                }
            }
            for (families, sizes) in [
                (
                    &["m5", "m6i", "m7g"][..],
                    &["large", "xlarge", "2xlarge", "4xlarge"][..],
                ),
                (&["c5", "c6i", "r5", "r6i"], &["large", "xlarge", "2xlarge"]),
            ] {
                for name in families
                    .iter()
                    .flat_map(|f| sizes.iter().map(move |s| format!("{f}.{s}")))
                {
                    assert!(
                        prices.ec2_instance_hourly.contains_key(&name),
                        "{region} {name}"
                    );
                }
            }
            for (families, sizes) in [
                (
                    &["db.t3", "db.t4g"][..],
                    &["micro", "small", "medium", "large"][..],
                ),
                (
                    &["db.m5", "db.m6i", "db.r5", "db.r6g"],
                    &["large", "xlarge", "2xlarge"],
                ),
            ] {
                for name in families
                    .iter()
                    .flat_map(|f| sizes.iter().map(move |s| format!("{f}.{s}")))
                {
                    assert!(
                        prices.rds_instance_hourly.contains_key(&name),
                        "{region} {name}"
                    );
                }
            }
            for volume in ["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"] {
                assert!(
                    prices.ebs_volume_gb_month.contains_key(volume),
                    "{region} {volume}"
                );
            }
            for balancer in ["application", "network", "gateway"] {
                assert!(prices.load_balancer_hourly.contains_key(balancer));
            }
            // Every price is something: a zero is a missing number.
            assert!(prices.ec2_instance_hourly.values().all(|price| price.0 > 0));
            assert!(prices.rds_instance_hourly.values().all(|price| price.0 > 0));
        }
    }

    #[test]
    fn a_catalog_with_a_typo_or_an_inexact_price_is_refused() {
        let good = include_str!("../prices/aws.json");
        let typo = good.replacen("nat_gateway_hourly", "nat_gatway_hourly", 1);
        assert!(matches!(
            PriceCatalog::parse(&typo),
            Err(CostError::Catalog(_))
        ));
        let inexact = good.replacen("0.0052", "0.00000000052", 1);
        let error = PriceCatalog::parse(&inexact).unwrap_err().to_string();
        assert!(error.contains("at most 9 decimals"), "{error}");
        let negative = good.replacen("0.0052", "-0.0052", 1);
        assert!(PriceCatalog::parse(&negative).is_err());
    }

    #[test]
    fn an_instance_created_in_eu_west_1_is_priced_from_the_constant_region() {
        let plan = in_region(
            "eu-west-1",
            vec![create_instance("aws_instance.web", "t3.micro")],
        );
        let estimate = estimate(&plan, catalog(), &rules());
        // $0.0114 an hour × 730 hours.
        assert_eq!(
            estimate.resources,
            vec![ResourceCost {
                address: "aws_instance.web".into(),
                resource_type: "aws_instance".into(),
                priced_as: None,
                region: Some("eu-west-1".into()),
                monthly_before: None,
                monthly_after: Some(8.32),
                unpriced: None,
                note: None,
            }]
        );
        assert_eq!(
            (
                estimate.monthly_before,
                estimate.monthly_after,
                estimate.monthly_delta
            ),
            (0.0, 8.32, 8.32)
        );
        assert_eq!(estimate.currency, "USD");
        assert_eq!(estimate.catalog_version, catalog().version());
        assert!(estimate.unpriced.is_empty());
    }

    #[test]
    fn the_region_can_come_from_a_root_variable() {
        let plan = plan(
            json!({"references": ["var.region"]}),
            json!({"region": {"value": "eu-central-1"}, "name": {"value": "web"}}),
            vec![create_instance("aws_instance.web", "m5.large")],
        );
        let estimate = estimate(&plan, catalog(), &rules());
        let web = resource(&estimate, "aws_instance.web");
        assert_eq!(web.region.as_deref(), Some("eu-central-1"));
        // $0.115 × 730.
        assert_eq!(web.monthly_after, Some(83.95));

        let nested = plan_with_provider(
            json!({"aws": {"name": "aws", "expressions": {"region": {
                "references": ["var.settings.region", "var.settings"]
            }}}}),
            json!({"settings": {"value": {"region": "us-east-1", "size": "small"}}}),
            vec![create_instance("aws_instance.web", "m5.large")],
        );
        let estimate = estimate_of(&nested);
        assert_eq!(
            resource(&estimate, "aws_instance.web").region.as_deref(),
            Some("us-east-1")
        );
    }

    #[test]
    fn a_region_from_an_expression_the_plan_does_not_evaluate_is_not_guessed() {
        let plan = plan_with_provider(
            json!({"aws": {"name": "aws", "expressions": {"region": {
                "references": ["local.region"]
            }}}}),
            json!({}),
            vec![create_instance("aws_instance.web", "t3.micro")],
        );
        let rules = PricingRules {
            default_region: Some("us-east-1".into()),
            ..PricingRules::default()
        };
        let estimate = estimate(&plan, catalog(), &rules);
        let reason = resource(&estimate, "aws_instance.web")
            .unpriced
            .clone()
            .unwrap();
        assert!(reason.starts_with("region unknown"), "{reason}");
        assert!(reason.contains("local.region"), "{reason}");
    }

    #[test]
    fn replacing_an_instance_with_a_larger_type_shows_before_after_and_delta() {
        let (after, unknown) = instance("t3.large");
        let replace = change_with_unknown(
            "aws_instance.web",
            &["delete", "create"],
            existing_instance("t3.micro"),
            after,
            unknown,
        );
        let estimate = estimate_of(&in_region("us-east-1", vec![replace]));
        let web = resource(&estimate, "aws_instance.web");
        // $0.0104 and $0.0832 an hour.
        assert_eq!(
            (web.monthly_before, web.monthly_after),
            (Some(7.59), Some(60.74))
        );
        assert_eq!(
            (
                estimate.monthly_before,
                estimate.monthly_after,
                estimate.monthly_delta
            ),
            (7.59, 60.74, 53.14)
        );
    }

    #[test]
    fn destroying_gives_a_negative_delta() {
        let destroy = change(
            "aws_instance.web",
            &["delete"],
            existing_instance("t3.small"),
            Value::Null,
        );
        let kept = change(
            "aws_instance.db",
            &["no-op"],
            existing_instance("t3.small"),
            existing_instance("t3.small"),
        );
        let estimate = estimate_of(&in_region("eu-west-1", vec![destroy, kept]));
        // $0.0228 × 730 = $16.644 each.
        assert_eq!(resource(&estimate, "aws_instance.web").monthly_after, None);
        assert_eq!(
            (
                estimate.monthly_before,
                estimate.monthly_after,
                estimate.monthly_delta
            ),
            (33.29, 16.64, -16.64)
        );
    }

    #[test]
    fn unknown_types_are_unpriced_and_not_counted() {
        let changes = vec![
            create_instance("aws_instance.web", "t3.micro"),
            create_instance("aws_instance.huge", "t9.huge"),
            change(
                "aws_route53_zone.main",
                &["create"],
                Value::Null,
                json!({"name": "example.com", "comment": "Managed by Terraform"}),
            ),
        ];
        let estimate = estimate_of(&in_region("us-east-1", changes));
        assert_eq!(
            resource(&estimate, "aws_instance.huge").unpriced.as_deref(),
            Some("instance type t9.huge is not in the price catalog")
        );
        assert_eq!(
            resource(&estimate, "aws_route53_zone.main")
                .unpriced
                .as_deref(),
            Some("aws_route53_zone is not in the price catalog")
        );
        assert_eq!(
            estimate.unpriced,
            ["aws_instance.huge", "aws_route53_zone.main"]
        );
        assert_eq!(estimate.monthly_after, 7.59);
    }

    #[test]
    fn an_instance_type_known_only_after_apply_is_unpriced() {
        let (mut after, mut unknown) = instance("t3.micro");
        after.as_object_mut().unwrap().remove("instance_type");
        unknown["instance_type"] = json!(true);
        let replace = change_with_unknown(
            "aws_instance.web",
            &["create", "delete"],
            existing_instance("t3.micro"),
            after,
            unknown,
        );
        let estimate = estimate_of(&in_region("us-east-1", vec![replace]));
        let web = resource(&estimate, "aws_instance.web");
        assert_eq!(
            web.unpriced.as_deref(),
            Some("depends on values known only after apply: instance_type")
        );
        assert_eq!((web.monthly_before, web.monthly_after), (None, None));
        assert_eq!(
            (estimate.monthly_before, estimate.monthly_after),
            (0.0, 0.0)
        );
        assert_eq!(estimate.unpriced, ["aws_instance.web"]);
    }

    #[test]
    fn aliased_test_types_are_priced_in_the_default_region() {
        let testcloud = "registry.terraform.io/envplane/testcloud";
        let mut server = change(
            "testcloud_instance.app",
            &["create"],
            Value::Null,
            json!({"name": "app", "instance_type": "t3.medium"}),
        );
        server["provider_name"] = json!(testcloud);
        let mut disk = change(
            "testcloud_volume.data",
            &["create"],
            Value::Null,
            json!({"name": "data", "size": 100}),
        );
        disk["provider_name"] = json!(testcloud);
        let plan = plan_with_provider(
            json!({"testcloud": {"name": "testcloud", "full_name": testcloud}}),
            json!({}),
            vec![server, disk],
        );
        let mut rules = PricingRules {
            default_region: Some("eu-central-1".into()),
            ..PricingRules::default()
        };
        for spec in [
            "testcloud_instance=aws_instance",
            "testcloud_volume = aws_ebs_volume",
        ] {
            let (from, to) = PricingRules::alias(spec).unwrap();
            rules.aliases.insert(from, to);
        }
        let estimate = estimate(&plan, catalog(), &rules);
        let app = resource(&estimate, "testcloud_instance.app");
        assert_eq!(app.priced_as.as_deref(), Some("aws_instance"));
        assert_eq!(app.region.as_deref(), Some("eu-central-1"));
        // $0.048 × 730 = $35.04, and 100 GB of gp2 at $0.119.
        assert_eq!(app.monthly_after, Some(35.04));
        assert_eq!(
            resource(&estimate, "testcloud_volume.data").monthly_after,
            Some(11.9)
        );
        assert_eq!(estimate.monthly_after, 46.94);

        let unaliased = estimate_of(&plan);
        assert_eq!(unaliased.unpriced.len(), 2);
    }

    #[test]
    fn alias_specs_are_read_or_refused_with_the_reason() {
        assert!(matches!(
            PricingRules::alias("testcloud_instance"),
            Err(CostError::AliasSyntax(_))
        ));
        assert!(matches!(
            PricingRules::alias("Testcloud=aws_instance"),
            Err(CostError::TypeName(_))
        ));
        assert!(matches!(
            PricingRules::alias("aws_instance=aws_ebs_volume"),
            Err(CostError::AlreadyPriced(_))
        ));
        let error = PricingRules::alias("testcloud_thing=aws_spaceship").unwrap_err();
        assert!(
            error.to_string().contains("it prices aws_instance, "),
            "{error}"
        );
    }

    #[test]
    fn a_multi_az_database_costs_double() {
        let database = |multi_az: bool| {
            json!({
                "identifier": "orders",
                "engine": "postgres",
                "engine_version": "16.3",
                "instance_class": "db.m5.large",
                "allocated_storage": 100,
                "storage_type": "gp3",
                "multi_az": multi_az,
                "password": SENSITIVE
            })
        };
        let changes = vec![
            change(
                "aws_db_instance.single",
                &["create"],
                Value::Null,
                database(false),
            ),
            change(
                "aws_db_instance.multi",
                &["create"],
                Value::Null,
                database(true),
            ),
        ];
        let estimate = estimate_of(&in_region("us-east-1", changes));
        // $0.171 × 730 + 100 GB × $0.115 = $136.33.
        assert_eq!(
            resource(&estimate, "aws_db_instance.single").monthly_after,
            Some(136.33)
        );
        assert_eq!(
            resource(&estimate, "aws_db_instance.multi").monthly_after,
            Some(272.66)
        );

        let licensed = change(
            "aws_db_instance.reports",
            &["create"],
            Value::Null,
            json!({
                "engine": "sqlserver-se",
                "instance_class": "db.m5.large",
                "allocated_storage": 20
            }),
        );
        let estimate = estimate_of(&in_region("us-east-1", vec![licensed]));
        assert_eq!(
            estimate.resources[0].unpriced.as_deref(),
            Some("engine sqlserver-se is not in the price catalog")
        );
    }

    #[test]
    fn attributes_aws_fills_in_are_priced_at_its_default_and_say_so() {
        let created = change_with_unknown(
            "aws_db_instance.main",
            &["create"],
            Value::Null,
            json!({"engine": "mysql", "instance_class": "db.t3.micro", "allocated_storage": 20}),
            json!({"storage_type": true, "multi_az": true, "iops": true, "endpoint": true}),
        );
        let estimate = estimate_of(&in_region("us-east-1", vec![created]));
        let main = &estimate.resources[0];
        // $0.017 × 730 + 20 GB × $0.115.
        assert_eq!(main.monthly_after, Some(14.71));
        let note = main.note.as_deref().unwrap();
        assert!(
            note.contains("storage_type is known only after apply: priced as gp2"),
            "{note}"
        );
        assert!(note.contains("priced single-AZ"), "{note}");
    }

    #[test]
    fn volumes_are_priced_by_size_type_and_provisioned_performance() {
        let volume = |after: Value| change("aws_ebs_volume.data", &["create"], Value::Null, after);
        let price = |after: Value| {
            estimate_of(&in_region("us-east-1", vec![volume(after)])).resources[0].monthly_after
        };
        assert_eq!(price(json!({"size": 100, "type": "gp2"})), Some(10.0));
        // $0.125 × 100 + $0.065 × 4,000.
        assert_eq!(
            price(json!({"size": 100, "type": "io1", "iops": 4000})),
            Some(272.5)
        );
        // gp3 above its baseline: 3,000 IOPS × $0.005 and 125 MiB/s × $0.04.
        assert_eq!(
            price(json!({"size": 100, "type": "gp3", "iops": 6000, "throughput": 250})),
            Some(8.0 + 15.0 + 5.0)
        );
        let baseline = change_with_unknown(
            "aws_ebs_volume.data",
            &["create"],
            Value::Null,
            json!({"size": 100, "type": "gp3"}),
            json!({"iops": true, "throughput": true, "id": true}),
        );
        let estimate = estimate_of(&in_region("us-east-1", vec![baseline]));
        assert_eq!(estimate.resources[0].monthly_after, Some(8.0));
        assert_eq!(estimate.resources[0].note, None);
    }

    #[test]
    fn provisioned_dynamodb_capacity_is_priced_and_on_demand_is_usage_based() {
        let table =
            |after: Value| change("aws_dynamodb_table.orders", &["create"], Value::Null, after);
        let provisioned = table(json!({
            "name": "orders",
            "billing_mode": "PROVISIONED",
            "hash_key": "id",
            "read_capacity": 20,
            "write_capacity": 10,
            "global_secondary_index": [
                {"name": "by_customer", "hash_key": "customer", "projection_type": "ALL",
                 "read_capacity": 5, "write_capacity": 5}
            ],
            "replica": []
        }));
        let estimate = estimate_of(&in_region("us-east-1", vec![provisioned]));
        // (25 × $0.00013 + 15 × $0.00065) × 730 = $9.49.
        let orders = &estimate.resources[0];
        assert_eq!(orders.monthly_after, Some(9.49));
        assert_eq!(
            orders.note.as_deref(),
            Some("provisioned capacity only: storage is usage-based")
        );

        let on_demand = table(json!({"name": "orders", "billing_mode": "PAY_PER_REQUEST"}));
        let estimate = estimate_of(&in_region("us-east-1", vec![on_demand]));
        assert_eq!(estimate.resources[0].monthly_after, Some(0.0));
        assert_eq!(estimate.resources[0].note.as_deref(), Some(USAGE_BASED));
        assert!(estimate.unpriced.is_empty());
    }

    #[test]
    fn lambda_functions_and_buckets_cost_nothing_with_a_note_wherever_they_are() {
        let changes = vec![
            change(
                "aws_lambda_function.api",
                &["create"],
                Value::Null,
                json!({"function_name": "api", "runtime": "provided.al2023", "memory_size": 512}),
            ),
            change(
                "aws_s3_bucket.assets",
                &["update"],
                json!({"bucket": "assets", "force_destroy": false}),
                json!({"bucket": "assets", "force_destroy": true}),
            ),
        ];
        let plan = plan_with_provider(json!({}), json!({}), changes);
        let estimate = estimate_of(&plan);
        for resource in &estimate.resources {
            assert_eq!(resource.unpriced, None, "{}", resource.address);
            assert_eq!(resource.note.as_deref(), Some(USAGE_BASED));
            assert_eq!(resource.region, None);
        }
        assert_eq!(
            resource(&estimate, "aws_s3_bucket.assets").monthly_before,
            Some(0.0)
        );
        assert_eq!(estimate.monthly_after, 0.0);
    }

    #[test]
    fn without_a_region_resources_are_unpriced() {
        let changes = vec![
            create_instance("aws_instance.web", "t3.micro"),
            change(
                "aws_nat_gateway.main",
                &["create"],
                Value::Null,
                json!({"connectivity_type": "public"}),
            ),
        ];
        let plan = plan_with_provider(json!({"aws": {"name": "aws"}}), json!({}), changes.clone());
        let estimate = estimate_of(&plan);
        assert_eq!(
            estimate.unpriced,
            ["aws_instance.web", "aws_nat_gateway.main"]
        );
        let reason = estimate.resources[0].unpriced.as_deref().unwrap();
        assert!(reason.starts_with("region unknown"), "{reason}");

        let rules = PricingRules {
            default_region: Some("us-east-1".into()),
            ..PricingRules::default()
        };
        let defaulted = super::estimate(&plan, catalog(), &rules);
        // $0.0104 and $0.045 an hour.
        assert_eq!(
            (defaulted.monthly_after, defaulted.unpriced.len()),
            (40.44, 0)
        );

        let elsewhere = in_region("ap-south-1", changes);
        let estimate = estimate_of(&elsewhere);
        assert_eq!(
            estimate.resources[1].unpriced.as_deref(),
            Some("region ap-south-1 is not in the price catalog")
        );
    }

    #[test]
    fn the_default_provider_configuration_prices_what_an_alias_cannot_be_told_from() {
        let mut in_module = create_instance("module.web[0].aws_instance.this", "t3.nano");
        in_module["module_address"] = json!("module.web[0]");
        in_module["type"] = json!("aws_instance");
        let plan = plan_with_provider(
            json!({
                "aws": {
                    "name": "aws", "full_name": AWS,
                    "expressions": {"region": {"constant_value": "eu-west-1"}}
                },
                "aws.us": {
                    "name": "aws", "full_name": AWS, "alias": "us",
                    "expressions": {"region": {"constant_value": "us-east-1"}}
                },
                "module.db:aws": {
                    "name": "aws", "full_name": AWS,
                    "expressions": {"region": {"constant_value": "eu-central-1"}}
                }
            }),
            json!({}),
            vec![create_instance("aws_instance.web", "t3.nano"), in_module],
        );
        let estimate = estimate_of(&plan);
        for resource in &estimate.resources {
            assert_eq!(
                resource.region.as_deref(),
                Some("eu-west-1"),
                "{}",
                resource.address
            );
        }
    }

    #[test]
    fn data_sources_are_left_out_and_the_other_simple_types_are_priced_hourly() {
        let mut data = change(
            "data.aws_ami.ubuntu",
            &["read"],
            Value::Null,
            json!({"most_recent": true}),
        );
        data["mode"] = json!("data");
        data["type"] = json!("aws_ami");
        let changes = vec![
            data,
            change(
                "aws_lb.front",
                &["create"],
                Value::Null,
                json!({"name": "front", "internal": false}),
            ),
            change(
                "aws_alb.legacy",
                &["create"],
                Value::Null,
                json!({"load_balancer_type": "network"}),
            ),
            change(
                "aws_eip.nat",
                &["create"],
                Value::Null,
                json!({"domain": "vpc"}),
            ),
            change(
                "aws_nat_gateway.private",
                &["create"],
                Value::Null,
                json!({"connectivity_type": "private"}),
            ),
        ];
        let estimate = estimate_of(&in_region("eu-west-1", changes));
        assert_eq!(estimate.resources.len(), 4);
        let monthly: Vec<_> = estimate.resources.iter().map(|r| r.monthly_after).collect();
        // $0.0252, $0.0252, $0.005 and $0.048 an hour.
        assert_eq!(monthly, [Some(18.4), Some(18.4), Some(3.65), Some(35.04)]);
    }

    #[test]
    fn sensitive_values_are_not_priced() {
        let mut after = existing_instance("t3.micro");
        after["instance_type"] = json!(SENSITIVE);
        let sensitive = change("aws_instance.web", &["no-op"], after.clone(), after);
        let estimate = estimate_of(&in_region("us-east-1", vec![sensitive]));
        assert_eq!(
            estimate.resources[0].unpriced.as_deref(),
            Some("instance_type is sensitive and withheld from the plan")
        );
    }

    #[test]
    fn totals_are_rounded_once_from_exact_amounts() {
        // Three t3.nano in us-east-1: $3.796 each, $11.388 together.
        let changes = (0..3)
            .map(|at| create_instance(&format!("aws_instance.web[{at}]"), "t3.nano"))
            .collect();
        let estimate = estimate_of(&in_region("us-east-1", changes));
        assert!(estimate
            .resources
            .iter()
            .all(|r| r.monthly_after == Some(3.8)));
        assert_eq!(estimate.monthly_after, 11.39);
        assert_eq!(usd(-5_000_000), -0.01);
        assert_eq!(usd(4_999_999), 0.0);
    }
}
