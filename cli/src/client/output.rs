//! Printing answers: tables for people by default, the API's JSON with `--output json`.

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use comfy_table::{presets, Table};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::http::Listing;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// How one kind of object shows in a table.
pub trait Render: DeserializeOwned {
    /// The column headers of a listing; `show` prints them as field names.
    const COLUMNS: &'static [&'static str];

    /// This object's cells, in `COLUMNS` order.
    fn row(&self) -> Vec<String>;
}

/// Prints one object: a field/value table, or the API's JSON.
pub fn print_one<T: Render>(format: Format, value: Value) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(&value),
        Format::Table => println!("{}", details_table(&parse::<T>(value)?)),
    }
    Ok(())
}

/// Prints a listing: one row per object, or the API's `{"items", "next"}` JSON.
pub fn print_list<T: Render>(format: Format, listing: Listing) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(&serde_json::to_value(&listing)?),
        Format::Table => {
            let items = listing
                .items
                .into_iter()
                .map(parse::<T>)
                .collect::<anyhow::Result<Vec<T>>>()?;
            println!("{}", list_table(&items));
            if let Some(next) = listing.next {
                eprintln!("More items follow: pass --all, or --cursor {next}");
            }
        }
    }
    Ok(())
}

/// Confirms an action that answers no object, such as a deletion.
pub fn print_done(format: Format, message: &str, json: Value) {
    match format {
        Format::Json => print_json(&json),
        Format::Table => println!("{message}"),
    }
}

pub fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).expect("a JSON value always serializes");
    println!("{text}");
}

pub fn parse<T: DeserializeOwned>(value: Value) -> anyhow::Result<T> {
    serde_json::from_value(value).context("the API answered with an unexpected shape")
}

pub fn list_table<T: Render>(items: &[T]) -> Table {
    let mut table = new_table();
    table.set_header(T::COLUMNS.to_vec());
    for item in items {
        table.add_row(item.row());
    }
    table
}

pub fn details_table<T: Render>(item: &T) -> Table {
    let mut table = new_table();
    for (field, value) in T::COLUMNS.iter().zip(item.row()) {
        table.add_row(vec![field.to_string(), value]);
    }
    table
}

fn new_table() -> Table {
    let mut table = Table::new();
    table.load_preset(presets::UTF8_FULL_CONDENSED);
    table
}

/// An optional cell: `-` when absent.
pub fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_string()
}

pub fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_string()
}

pub fn timestamp(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The API's name of an enum value, such as `waiting_for_approval`.
pub fn label(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        other => format!("{other:?}"),
    }
}

/// How long something took, or has taken so far: `-` when it has not started.
pub fn elapsed(started: Option<DateTime<Utc>>, finished: Option<DateTime<Utc>>) -> String {
    started.map_or_else(
        || "-".to_string(),
        |started| duration(finished.unwrap_or_else(Utc::now) - started),
    )
}

/// `0.4s`, `12.3s`, `2m 05s`, `1h 02m`.
pub fn duration(delta: TimeDelta) -> String {
    let millis = delta.num_milliseconds().max(0);
    let seconds = millis / 1000;
    match seconds {
        0..60 => format!("{:.1}s", millis as f64 / 1000.0),
        60..3600 => format!("{}m {:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h {:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Thing {
        id: String,
        note: Option<String>,
    }

    impl Render for Thing {
        const COLUMNS: &'static [&'static str] = &["id", "note"];

        fn row(&self) -> Vec<String> {
            vec![self.id.clone(), or_dash(self.note.as_deref())]
        }
    }

    fn things() -> Vec<Thing> {
        vec![
            Thing {
                id: "thg_1".into(),
                note: Some("first".into()),
            },
            Thing {
                id: "thg_2".into(),
                note: None,
            },
        ]
    }

    #[test]
    fn listings_have_a_header_and_a_row_per_item() {
        let text = list_table(&things()).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].contains("id") && lines[1].contains("note"),
            "{text}"
        );
        let thg_2 = lines.iter().find(|line| line.contains("thg_2")).unwrap();
        assert!(thg_2.contains(" - "), "{text}");
        assert!(text.contains("first"));
    }

    #[test]
    fn details_pair_fields_with_values() {
        let text = details_table(&things().remove(0)).to_string();
        let note = text.lines().find(|line| line.contains("note")).unwrap();
        assert!(note.contains("first"), "{text}");
    }

    #[test]
    fn unexpected_shapes_are_errors() {
        assert!(parse::<Thing>(serde_json::json!({"nope": 1})).is_err());
    }

    #[test]
    fn timestamps_are_to_the_second() {
        let at = DateTime::parse_from_rfc3339("2025-03-04T05:06:07.891Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(timestamp(&at), "2025-03-04 05:06:07 UTC");
    }

    #[test]
    fn durations_read_at_a_glance() {
        let ms = TimeDelta::milliseconds;
        assert_eq!(duration(ms(0)), "0.0s");
        assert_eq!(duration(ms(420)), "0.4s");
        assert_eq!(duration(ms(59_940)), "59.9s");
        assert_eq!(duration(ms(125_000)), "2m 05s");
        assert_eq!(duration(ms(3_723_000)), "1h 02m");
        assert_eq!(
            duration(ms(-5_000)),
            "0.0s",
            "clock skew is not negative time"
        );
        assert_eq!(elapsed(None, None), "-");
        let at = Utc::now();
        assert_eq!(elapsed(Some(at), Some(at + ms(1500))), "1.5s");
    }

    #[test]
    fn labels_are_the_api_names() {
        use envplane_core::deployment::DeploymentStatus;
        assert_eq!(
            label(&DeploymentStatus::WaitingForApproval),
            "waiting_for_approval"
        );
    }
}
