//! The API Gateway routes of `template.yaml` and the function behind each, matched the way
//! an HTTP API matches them: a literal segment beats a `{parameter}`.

use std::collections::HashMap;

use http::Method;

/// The five API functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    Create,
    Stop,
    Delete,
    Status,
    Sources,
}

impl Function {
    /// Its `BinaryName` in template.yaml.
    pub const fn binary_name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Stop => "stop",
            Self::Delete => "delete",
            Self::Status => "status",
            Self::Sources => "sources",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub function: Function,
}

const fn route(method: &'static str, path: &'static str, function: Function) -> Route {
    Route { method, path, function }
}

/// Every route of `template.yaml` (SPEC §1).
pub const ROUTES: &[Route] = &[
    route("POST", "/", Function::Create),
    route("POST", "/{app_id}/{build_id}", Function::Create),
    route("DELETE", "/{app_id}/{build_id}", Function::Stop),
    route("DELETE", "/{app}", Function::Delete),
    route("GET", "/{app_id}/{build_id}/status", Function::Status),
    route("GET", "/{app_id}/{build_id}/logs", Function::Status),
    route("GET", "/octhc", Function::Status),
    route("GET", "/{build_uuid}", Function::Sources),
    route("HEAD", "/{build_uuid}", Function::Sources),
];

/// A matched route with its decoded path parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct Matched {
    pub route: Route,
    pub parameters: HashMap<String, String>,
}

impl Route {
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// The most specific route for `method` and `path`, or `None` (API Gateway's 404).
pub fn match_route(method: &Method, path: &str) -> Option<Matched> {
    let segments = split(path)?;
    ROUTES
        .iter()
        .filter(|r| r.method == method.as_str())
        .filter_map(|route| {
            let pattern = split(route.path)?;
            if pattern.len() != segments.len() {
                return None;
            }
            let mut parameters = HashMap::new();
            let mut literals = 0;
            for (expected, actual) in pattern.iter().zip(&segments) {
                match expected.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) => {
                        let decoded = percent_encoding::percent_decode_str(actual).decode_utf8().ok()?;
                        parameters.insert(name.to_owned(), decoded.into_owned());
                    }
                    None if expected == actual => literals += 1,
                    None => return None,
                }
            }
            Some((literals, Matched { route: *route, parameters }))
        })
        .max_by_key(|(literals, _)| *literals)
        .map(|(_, matched)| matched)
}

/// `/a/b` → `["a", "b"]`; `/` → `[]`; empty segments (`//`, a trailing `/`) match nothing.
fn split(path: &str) -> Option<Vec<&str>> {
    let trimmed = path.strip_prefix('/')?;
    if trimmed.is_empty() {
        return Some(Vec::new());
    }
    let segments: Vec<&str> = trimmed.split('/').collect();
    segments.iter().all(|s| !s.is_empty()).then_some(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(method: Method, path: &str) -> Option<Function> {
        match_route(&method, path).map(|m| m.route.function)
    }

    #[test]
    fn every_route_reaches_its_function() {
        assert_eq!(function(Method::POST, "/"), Some(Function::Create));
        assert_eq!(function(Method::POST, "/app/1"), Some(Function::Create));
        assert_eq!(function(Method::DELETE, "/app/1"), Some(Function::Stop));
        assert_eq!(function(Method::DELETE, "/app"), Some(Function::Delete));
        assert_eq!(function(Method::GET, "/app/1/status"), Some(Function::Status));
        assert_eq!(function(Method::GET, "/app/1/logs"), Some(Function::Status));
        assert_eq!(function(Method::HEAD, "/0b9e8c2a-6c84-4a3f-9a55-6d6a4c1b2e10"), Some(Function::Sources));
    }

    #[test]
    fn a_literal_route_beats_a_parameter() {
        let matched = match_route(&Method::GET, "/octhc").unwrap();
        assert_eq!(matched.route.path, "/octhc");
        assert!(matched.parameters.is_empty());
        assert_eq!(match_route(&Method::GET, "/other").unwrap().route.path, "/{build_uuid}");
    }

    #[test]
    fn unknown_routes_match_nothing() {
        for (method, path) in [
            (Method::GET, "/"),
            (Method::PUT, "/app/1"),
            (Method::GET, "/a/b/c/d"),
            (Method::GET, "/app/1/other"),
            (Method::POST, "/app"),
            (Method::GET, "/app//status"),
            (Method::DELETE, "/app/1/"),
        ] {
            assert_eq!(function(method.clone(), path), None, "{method} {path}");
        }
    }

    #[test]
    fn parameters_are_decoded() {
        let matched = match_route(&Method::GET, "/my%20app/1/status").unwrap();
        assert_eq!(matched.parameters["app_id"], "my app");
        assert_eq!(matched.parameters["build_id"], "1");
    }
}

#[cfg(test)]
mod template_tests {
    use super::*;

    /// The `Method`/`Path` of every `HttpApi` event in `template.yaml`, with the function
    /// resource (`CreateFunction` → `Create`) it belongs to.
    fn template_routes() -> Vec<(String, String, String)> {
        let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml")).expect("template.yaml");
        let mut resource = String::new();
        let mut routes = Vec::new();
        for line in template.lines() {
            if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')).filter(|l| !l.starts_with(' ')) {
                resource = name.to_owned();
            }
            let Some(properties) = line.trim().strip_prefix("Properties: {ApiId: !Ref ShuttleApi, ") else { continue };
            let field = |name: &str| {
                properties.split(", ").find_map(|p| p.strip_prefix(name)).map(|v| v.trim_end_matches('}').trim_matches('"').to_owned())
            };
            let function = resource.strip_suffix("Function").unwrap_or(&resource).to_owned();
            routes.push((field("Method: ").expect("Method"), field("Path: ").expect("Path"), function));
        }
        routes.sort();
        routes
    }

    #[test]
    fn the_gateway_serves_exactly_the_routes_of_the_template() {
        let mut served: Vec<(String, String, String)> =
            ROUTES.iter().map(|r| (r.method.to_owned(), r.path.to_owned(), format!("{:?}", r.function))).collect();
        served.sort();
        assert_eq!(template_routes(), served);
    }
}
