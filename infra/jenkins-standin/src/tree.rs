//! The `tree=` query parameter of Jenkins' remote API: `builds[number,actions[parameters[name,value]]]{0,10}`.
//! Only the named properties are kept (and `_class`, which Jenkins always writes); a property
//! named without brackets whose value is an object keeps only its `_class`; `{m,n}` slices an array.

use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub children: Vec<Node>,
    /// `{m,n}`: from m (inclusive) to n (exclusive); `{m,}` from m; `{,n}` the first n; `{m}` just m.
    pub range: Option<(Option<usize>, Option<usize>)>,
}

/// Parses a tree specification; an error says where it is malformed.
pub fn parse(spec: &str) -> Result<Vec<Node>, String> {
    let chars: Vec<char> = spec.chars().collect();
    let mut at = 0;
    let nodes = parse_list(&chars, &mut at)?;
    if at != chars.len() {
        return Err(format!("unexpected '{}' at {at} in tree", chars[at]));
    }
    Ok(nodes)
}

fn parse_list(chars: &[char], at: &mut usize) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    loop {
        let start = *at;
        while *at < chars.len() && !matches!(chars[*at], ',' | '[' | ']' | '{' | '}') {
            *at += 1;
        }
        let name: String = chars[start..*at].iter().collect::<String>().trim().to_owned();
        if name.is_empty() {
            return Err(format!("a property name is missing at {start} in tree"));
        }
        let mut node = Node { name, children: Vec::new(), range: None };
        if chars.get(*at) == Some(&'[') {
            *at += 1;
            node.children = parse_list(chars, at)?;
            if chars.get(*at) != Some(&']') {
                return Err(format!("']' expected at {} in tree", *at));
            }
            *at += 1;
        }
        if chars.get(*at) == Some(&'{') {
            let close = chars[*at..].iter().position(|c| *c == '}').ok_or("'}' missing in tree")? + *at;
            let inner: String = chars[*at + 1..close].iter().collect();
            node.range = Some(parse_range(&inner)?);
            *at = close + 1;
        }
        nodes.push(node);
        if chars.get(*at) == Some(&',') {
            *at += 1;
            continue;
        }
        return Ok(nodes);
    }
}

fn parse_range(inner: &str) -> Result<(Option<usize>, Option<usize>), String> {
    let number = |s: &str| -> Result<Option<usize>, String> {
        let s = s.trim();
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse().map(Some).map_err(|_| format!("'{s}' is not an index in tree"))
        }
    };
    match inner.split_once(',') {
        Some((from, to)) => Ok((number(from)?, number(to)?)),
        None => {
            let index = number(inner)?.ok_or("an empty range in tree")?;
            Ok((Some(index), Some(index + 1)))
        }
    }
}

/// Keeps what the tree names.
pub fn prune(value: &Value, tree: &[Node]) -> Value {
    match value {
        Value::Object(object) => {
            let mut kept = Map::new();
            if let Some(class) = object.get("_class") {
                kept.insert("_class".to_owned(), class.clone());
            }
            for node in tree {
                if let Some(child) = object.get(&node.name) {
                    kept.insert(node.name.clone(), prune_property(child, node));
                }
            }
            Value::Object(kept)
        }
        Value::Array(items) => Value::Array(items.iter().map(|item| prune(item, tree)).collect()),
        other => other.clone(),
    }
}

fn prune_property(value: &Value, node: &Node) -> Value {
    match value {
        Value::Array(items) => {
            let (from, to) = node.range.unwrap_or((None, None));
            let from = from.unwrap_or(0).min(items.len());
            let to = to.unwrap_or(items.len()).clamp(from, items.len());
            Value::Array(items[from..to].iter().map(|item| prune(item, &node.children)).collect())
        }
        other => prune(other, &node.children),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_shuttle_query_keeps_the_parameters_of_every_build() {
        let job = json!({
            "_class": "WorkflowJob", "name": "app", "nextBuildNumber": 3,
            "builds": [
                {"_class": "WorkflowRun", "number": 2, "url": "u2", "result": null, "actions": [
                    {"_class": "hudson.model.ParametersAction", "parameters": [
                        {"_class": "hudson.model.StringParameterValue", "name": "BUILD_UUID", "value": "b"},
                        {"_class": "hudson.model.PasswordParameterValue", "name": "REGISTRY_PASSWORD"}]},
                    {"_class": "hudson.model.CauseAction", "causes": [{"shortDescription": "x"}]},
                    {}]},
                {"_class": "WorkflowRun", "number": 1, "url": "u1", "actions": []}]
        });
        let tree = parse("builds[number,actions[parameters[name,value]]]").expect("valid");
        assert_eq!(
            prune(&job, &tree),
            json!({"_class": "WorkflowJob", "builds": [
                {"_class": "WorkflowRun", "number": 2, "actions": [
                    {"_class": "hudson.model.ParametersAction", "parameters": [
                        {"_class": "hudson.model.StringParameterValue", "name": "BUILD_UUID", "value": "b"},
                        {"_class": "hudson.model.PasswordParameterValue", "name": "REGISTRY_PASSWORD"}]},
                    {"_class": "hudson.model.CauseAction"},
                    {}]},
                {"_class": "WorkflowRun", "number": 1, "actions": []}]})
        );
    }

    #[test]
    fn ranges_slice_arrays_and_objects_without_brackets_keep_their_class() {
        let job = json!({"builds": [{"number": 3}, {"number": 2}, {"number": 1}], "lastBuild": {"_class": "R", "number": 3}});
        assert_eq!(prune(&job, &parse("builds[number]{1,}").expect("valid")), json!({"builds": [{"number": 2}, {"number": 1}]}));
        assert_eq!(prune(&job, &parse("builds[number]{,1}").expect("valid")), json!({"builds": [{"number": 3}]}));
        assert_eq!(prune(&job, &parse("builds[number]{2}").expect("valid")), json!({"builds": [{"number": 1}]}));
        assert_eq!(prune(&job, &parse("lastBuild").expect("valid")), json!({"lastBuild": {"_class": "R"}}));
        assert_eq!(prune(&job, &parse("missing,lastBuild[number]").expect("valid")), json!({"lastBuild": {"_class": "R", "number": 3}}));
    }

    #[test]
    fn malformed_trees_are_refused() {
        for spec in ["", "builds[number", "builds[]", "a,,b", "builds{x}", "a]"] {
            assert!(parse(spec).is_err(), "{spec}");
        }
    }
}
