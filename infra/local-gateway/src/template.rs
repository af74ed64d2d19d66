//! What the gateway plays of `template.yaml`, read from the template itself (embedded when the
//! gateway is built), so that what runs locally is what the template declares for AWS.

use std::time::Duration;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

/// `template.yaml`, as the gateway was built with it.
pub const TEMPLATE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml"));

/// The poller's schedule: how often it fires, and the payload its target is invoked with.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// The event's name under the poller's `Events`.
    pub name: String,
    pub every: Duration,
    /// The target's `Input`, as JSON: EventBridge Scheduler invokes the function with exactly it.
    pub input: Value,
}

/// The poller's `ScheduleV2` event in `template`.
pub fn poller_schedule(template: &str) -> Result<Schedule, String> {
    let documents = YamlLoader::load_from_str(template).map_err(|e| format!("template.yaml is not YAML: {e}"))?;
    let root = documents.first().ok_or("template.yaml is empty")?;
    let poller = function(root, "poller")?;
    let events = poller["Properties"]["Events"].as_hash().ok_or("the poller declares no Events")?;
    let mut schedules = events.iter().filter(|(_, event)| event["Type"].as_str() == Some("ScheduleV2"));
    let (name, event) = schedules.next().ok_or("the poller has no ScheduleV2 event")?;
    if schedules.next().is_some() {
        return Err("the poller has more than one ScheduleV2 event".to_owned());
    }
    let name = name.as_str().unwrap_or_default().to_owned();
    let properties = &event["Properties"];
    let expression = properties["ScheduleExpression"].as_str().ok_or_else(|| format!("the schedule {name} has no ScheduleExpression"))?;
    let every = rate(expression)
        .ok_or_else(|| format!("the schedule {name}'s expression '{expression}' is not rate(N minute[s]|hour[s]|day[s])"))?;
    let input = properties["Input"].as_str().ok_or_else(|| {
        format!("the schedule {name} sets no Input: EventBridge Scheduler would then send its own default event, not a payload the template names")
    })?;
    let input = serde_json::from_str(input).map_err(|e| format!("the schedule {name}'s Input is not JSON: {e}"))?;
    Ok(Schedule { name, every, input })
}

/// The names of the environment variables `binary`'s function gets: the Globals' and its own.
pub fn function_environment(template: &str, binary: &str) -> Result<std::collections::BTreeSet<String>, String> {
    let documents = YamlLoader::load_from_str(template).map_err(|e| format!("template.yaml is not YAML: {e}"))?;
    let root = documents.first().ok_or("template.yaml is empty")?;
    let global = &root["Globals"]["Function"]["Environment"]["Variables"];
    let own = &function(root, binary)?["Properties"]["Environment"]["Variables"];
    let names = [global, own].into_iter().filter_map(Yaml::as_hash).flat_map(|variables| variables.keys());
    Ok(names.filter_map(|name| name.as_str().map(str::to_owned)).collect())
}

/// The function resource whose cargo-lambda binary is `binary`.
fn function<'a>(root: &'a Yaml, binary: &str) -> Result<&'a Yaml, String> {
    let resources = root["Resources"].as_hash().ok_or("template.yaml has no Resources")?;
    resources
        .values()
        .find(|resource| {
            resource["Type"].as_str() == Some("AWS::Serverless::Function") && resource["Metadata"]["BinaryName"].as_str() == Some(binary)
        })
        .ok_or_else(|| format!("template.yaml has no function with BinaryName {binary}"))
}

/// The period of a `rate(value unit)` expression (EventBridge's units of a minute and more).
fn rate(expression: &str) -> Option<Duration> {
    let inner = expression.strip_prefix("rate(")?.strip_suffix(')')?;
    let (value, unit) = inner.trim().split_once(' ')?;
    let value: u64 = value.parse().ok().filter(|v| *v > 0)?;
    let seconds = match (value, unit.trim()) {
        (1, "minute") | (2.., "minutes") => 60,
        (1, "hour") | (2.., "hours") => 3_600,
        (1, "day") | (2.., "days") => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(value * seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_names_the_schedules_payload_and_the_poller_takes_exactly_it() {
        let schedule = poller_schedule(TEMPLATE).expect("the poller's schedule");
        assert_eq!(schedule.every, Duration::from_secs(60));
        let event: poller::handler::PollerEvent = serde_json::from_value(schedule.input.clone())
            .unwrap_or_else(|e| panic!("the poller refuses the template's schedule Input {}: {e}", schedule.input));
        assert!(matches!(event, poller::handler::PollerEvent::Redrive(_)), "{event:?}");
    }

    #[test]
    fn a_schedule_without_input_or_with_another_payload_is_found_out() {
        let without = TEMPLATE.replace("Input: ", "Description: ");
        assert!(poller_schedule(&without).unwrap_err().contains("sets no Input"));
        let other = TEMPLATE.replace(r#"{"action": "redrive"}"#, r#"{"action": "rebuild"}"#);
        assert_ne!(other, TEMPLATE, "the template's Input is {{\"action\": \"redrive\"}}");
        let input = poller_schedule(&other).expect("a schedule").input;
        assert!(serde_json::from_value::<poller::handler::PollerEvent>(input).is_err(), "the poller takes only its own payload");
    }

    #[test]
    fn rates_are_read_as_eventbridge_reads_them() {
        assert_eq!(rate("rate(1 minute)"), Some(Duration::from_secs(60)));
        assert_eq!(rate("rate(5 minutes)"), Some(Duration::from_secs(300)));
        assert_eq!(rate("rate(2 hours)"), Some(Duration::from_secs(7_200)));
        assert_eq!(rate("rate(1 minutes)"), None, "EventBridge wants the singular for 1");
        assert_eq!(rate("rate(0 minutes)"), None);
        assert_eq!(rate("cron(0/1 * * * ? *)"), None);
    }
}
