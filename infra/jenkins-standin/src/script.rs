//! What the stand-in reads from a declarative pipeline script: its stages, their `when`
//! conditions, and the `sh` and `writeFile` steps with the strings the script builds for them.
//!
//! No Groovy runs here. The reader knows the shapes `infra/jenkins/config.xml` uses and nothing
//! more: `def f(String p) { return EXPR }` helpers, `stage('Name') { when { expression { [!]f() } }
//! steps { … } }`, `sh(label: '…', script: EXPR)` (inside `withEnv(list) { … }` or not),
//! `writeFile(file: '…', text: '…', encoding: '…')` and `post { always { … } }`. `EXPR` is a `+`
//! of string literals (`'…'`, `'''…'''`, Groovy's escapes decoded), calls of such helpers and
//! variables, which stay holes for the runner to fill ([`Text::fill`]) with what the script's
//! loops compute. Anything else in a stage (`script { … }` logic, `echo`, `error`) is left to the
//! runner, which knows what the shuttle's pipeline does there.

use std::collections::HashMap;

/// A string the script builds: literal pieces and variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text(Vec<Piece>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Variable(String),
}

impl Text {
    /// The string, each variable replaced by its value; an error names a variable without one.
    pub fn fill(&self, variables: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Variable(name) => {
                    out.push_str(&variables(name).ok_or_else(|| format!("the stand-in cannot compute the Groovy variable '{name}'"))?)
                }
            }
        }
        Ok(out)
    }
}

/// When a stage runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum When {
    Always,
    /// `when { expression { f() } }`, or with `!` (`negated`).
    Expression {
        function: String,
        negated: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `sh(label:, script:)`; `with_env` names the list of a `withEnv(list) { … }` around it.
    Sh { label: Option<String>, script: Text, with_env: Option<String> },
    /// `writeFile(file:, text:, encoding:)`.
    WriteFile { file: String, text: Text, encoding: Option<String> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    pub name: String,
    pub when: When,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pipeline {
    pub stages: Vec<Stage>,
    /// The steps of `post { always { … } }`.
    pub post_always: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// A string literal, decoded; `interpolated` for a `"…"` GString (its `${…}` kept as written).
    Str {
        value: String,
        interpolated: bool,
    },
    Ident(String),
    Punct(char),
}

/// Reads a declarative pipeline. `Ok(None)`: the script has no `pipeline { stages { … } }`.
pub fn parse(script: &str) -> Result<Option<Pipeline>, String> {
    let tokens = lex(script)?;
    let functions = functions(&tokens)?;
    let Some(pipeline) = find_block(&tokens, 0, tokens.len(), "pipeline") else { return Ok(None) };
    let Some(stages_block) = find_block(&tokens, pipeline.0, pipeline.1, "stages") else { return Ok(None) };
    let reader = Reader { tokens: &tokens, functions: &functions };
    let mut stages = Vec::new();
    let mut at = stages_block.0;
    while at < stages_block.1 {
        if tokens[at] == Token::Ident("stage".into()) && tokens.get(at + 1) == Some(&Token::Punct('(')) {
            let Some(Token::Str { value: name, .. }) = tokens.get(at + 2) else { return Err("a stage without a quoted name".into()) };
            let open = at + 4;
            if tokens.get(at + 3) != Some(&Token::Punct(')')) || tokens.get(open) != Some(&Token::Punct('{')) {
                return Err(format!("stage '{name}': expected `stage('{name}') {{`"));
            }
            let close = matching(&tokens, open)?;
            stages.push(Stage { name: name.clone(), when: reader.when(open + 1, close)?, steps: reader.steps(open + 1, close)? });
            at = close + 1;
        } else {
            at += 1;
        }
    }
    let post_always =
        match find_block(&tokens, pipeline.0, pipeline.1, "post").and_then(|post| find_block(&tokens, post.0, post.1, "always")) {
            Some((start, end)) => reader.steps(start, end)?,
            None => Vec::new(),
        };
    Ok(Some(Pipeline { stages, post_always }))
}

/// A helper `def name(String param) { return EXPR }`: its parameter and the tokens of `EXPR`.
struct Function {
    parameter: String,
    body: (usize, usize),
}

fn functions(tokens: &[Token]) -> Result<HashMap<String, Function>, String> {
    let mut functions = HashMap::new();
    for at in 0..tokens.len() {
        if tokens[at] != Token::Ident("def".into()) {
            continue;
        }
        let (Some(Token::Ident(name)), Some(Token::Punct('('))) = (tokens.get(at + 1), tokens.get(at + 2)) else { continue };
        let close_parameters = matching(tokens, at + 2)?;
        let parameter = match &tokens[at + 3..close_parameters] {
            [Token::Ident(_), Token::Ident(parameter)] | [Token::Ident(parameter)] => parameter.clone(),
            _ => String::new(),
        };
        let open = close_parameters + 1;
        if tokens.get(open) != Some(&Token::Punct('{')) {
            continue;
        }
        let close = matching(tokens, open)?;
        // Only a body that is one `return EXPR` is a string helper.
        if tokens.get(open + 1) == Some(&Token::Ident("return".into()))
            && !tokens[open + 2..close].iter().any(|t| *t == Token::Ident("return".into()))
        {
            functions.insert(name.clone(), Function { parameter, body: (open + 2, close) });
        }
    }
    Ok(functions)
}

struct Reader<'a> {
    tokens: &'a [Token],
    functions: &'a HashMap<String, Function>,
}

impl Reader<'_> {
    fn when(&self, start: usize, end: usize) -> Result<When, String> {
        let Some((when_start, when_end)) = find_block(self.tokens, start, end, "when") else { return Ok(When::Always) };
        let Some((expression_start, expression_end)) = find_block(self.tokens, when_start, when_end, "expression") else {
            return Err("a `when` without `expression { … }`: the stand-in knows no other condition".into());
        };
        match &self.tokens[expression_start..expression_end] {
            [Token::Ident(function), Token::Punct('('), Token::Punct(')')] => {
                Ok(When::Expression { function: function.clone(), negated: false })
            }
            [Token::Punct('!'), Token::Ident(function), Token::Punct('('), Token::Punct(')')] => {
                Ok(When::Expression { function: function.clone(), negated: true })
            }
            _ => Err("a `when { expression { … } }` that is not `f()` or `!f()`".into()),
        }
    }

    /// The `sh` and `writeFile` steps between `start` and `end`, in order.
    fn steps(&self, start: usize, end: usize) -> Result<Vec<Step>, String> {
        let mut with_env: Vec<(usize, String)> = Vec::new(); // (end of the block, list)
        let mut steps = Vec::new();
        let mut at = start;
        while at < end {
            with_env.retain(|(block_end, _)| at < *block_end);
            let is_call = |name: &str| self.tokens[at] == Token::Ident(name.into()) && self.tokens.get(at + 1) == Some(&Token::Punct('('));
            if is_call("withEnv") {
                let close = matching(self.tokens, at + 1)?;
                let Some(Token::Ident(list)) = self.tokens.get(at + 2) else {
                    return Err("withEnv of something else than a variable".into());
                };
                if self.tokens.get(close + 1) == Some(&Token::Punct('{')) {
                    with_env.push((matching(self.tokens, close + 1)?, list.clone()));
                }
                at = close + 1;
            } else if is_call("sh") || is_call("writeFile") {
                let close = matching(self.tokens, at + 1)?;
                let arguments = self.named_arguments(at + 2, close)?;
                let text = |name: &str| -> Result<Text, String> {
                    let &(from, to) = arguments.get(name).ok_or_else(|| format!("a step without `{name}:`"))?;
                    self.expression(from, to, &HashMap::new())
                };
                let literal = |name: &str| -> Result<Option<String>, String> {
                    match arguments.get(name) {
                        None => Ok(None),
                        Some(&(from, to)) => match &self.tokens[from..to] {
                            [Token::Str { value, interpolated: false }] => Ok(Some(value.clone())),
                            _ => Err(format!("`{name}:` is not a plain string")),
                        },
                    }
                };
                if is_call("sh") {
                    steps.push(Step::Sh {
                        label: literal("label")?,
                        script: text("script")?,
                        with_env: with_env.last().map(|(_, list)| list.clone()),
                    });
                } else {
                    let file = literal("file")?.ok_or("writeFile without `file:`")?;
                    steps.push(Step::WriteFile { file, text: text("text")?, encoding: literal("encoding")? });
                }
                at = close + 1;
            } else {
                at += 1;
            }
        }
        Ok(steps)
    }

    /// `name: EXPR, …` up to `end`: each name with the token range of its value.
    fn named_arguments(&self, start: usize, end: usize) -> Result<HashMap<String, (usize, usize)>, String> {
        let mut arguments = HashMap::new();
        let mut at = start;
        while at < end {
            let (Token::Ident(name), Some(Token::Punct(':'))) = (&self.tokens[at], self.tokens.get(at + 1)) else {
                return Err("a step call with arguments that are not `name: value`".into());
            };
            let from = at + 2;
            let mut to = from;
            let mut depth = 0usize;
            while to < end {
                match self.tokens[to] {
                    Token::Punct('(' | '[' | '{') => depth += 1,
                    Token::Punct(')' | ']' | '}') => depth = depth.saturating_sub(1),
                    Token::Punct(',') if depth == 0 => break,
                    _ => {}
                }
                to += 1;
            }
            arguments.insert(name.clone(), (from, to));
            at = to + 1;
        }
        Ok(arguments)
    }

    /// `TERM (+ TERM)*` between `start` and `end`, with `bound` parameters of a helper.
    fn expression(&self, start: usize, end: usize, bound: &HashMap<String, Text>) -> Result<Text, String> {
        let mut pieces = Vec::new();
        let mut at = start;
        loop {
            match self.tokens.get(at).filter(|_| at < end) {
                Some(Token::Str { value, interpolated: false }) => {
                    pieces.push(Piece::Literal(value.clone()));
                    at += 1;
                }
                Some(Token::Str { interpolated: true, .. }) => {
                    return Err("a GString (\"…${…}\") in a step's text: the stand-in reads only '…' strings".into())
                }
                Some(Token::Ident(name)) if self.tokens.get(at + 1) == Some(&Token::Punct('(')) => {
                    let close = matching(self.tokens, at + 1)?;
                    let function = self.functions.get(name).ok_or_else(|| format!("the stand-in does not know the function '{name}'"))?;
                    let argument = self.expression(at + 2, close, bound)?;
                    let bound = HashMap::from([(function.parameter.clone(), argument)]);
                    pieces.extend(self.expression(function.body.0, function.body.1, &bound)?.0);
                    at = close + 1;
                }
                Some(Token::Ident(name)) => {
                    match bound.get(name) {
                        Some(text) => pieces.extend(text.0.iter().cloned()),
                        None => pieces.push(Piece::Variable(name.clone())),
                    }
                    at += 1;
                }
                Some(Token::Punct('(')) => {
                    let close = matching(self.tokens, at)?;
                    pieces.extend(self.expression(at + 1, close, bound)?.0);
                    at = close + 1;
                }
                _ => return Err("a step's text that is not a `+` of strings, variables and helper calls".into()),
            }
            match self.tokens.get(at).filter(|_| at < end) {
                None => return Ok(Text(pieces)),
                Some(Token::Punct('+')) => at += 1,
                Some(_) => return Err("a step's text that is not a `+` of strings, variables and helper calls".into()),
            }
        }
    }
}

/// The first `name {` between `start` and `end` at any depth: the range inside its braces.
fn find_block(tokens: &[Token], start: usize, end: usize, name: &str) -> Option<(usize, usize)> {
    (start..end.saturating_sub(1))
        .find(|&at| tokens[at] == Token::Ident(name.into()) && tokens[at + 1] == Token::Punct('{'))
        .and_then(|at| matching(tokens, at + 1).ok().map(|close| (at + 2, close)))
}

/// The index of the bracket closing the one at `open`.
fn matching(tokens: &[Token], open: usize) -> Result<usize, String> {
    let (opening, closing) = match tokens.get(open) {
        Some(Token::Punct('(')) => ('(', ')'),
        Some(Token::Punct('{')) => ('{', '}'),
        Some(Token::Punct('[')) => ('[', ']'),
        _ => return Err("expected a bracket".into()),
    };
    let mut depth = 0usize;
    for (at, token) in tokens.iter().enumerate().skip(open) {
        match token {
            Token::Punct(c) if *c == opening => depth += 1,
            Token::Punct(c) if *c == closing => {
                depth -= 1;
                if depth == 0 {
                    return Ok(at);
                }
            }
            _ => {}
        }
    }
    Err(format!("a '{opening}' that is never closed"))
}

fn lex(script: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = script.chars().collect();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        let next = chars.get(at + 1).copied();
        if c.is_whitespace() {
            at += 1;
        } else if c == '/' && next == Some('/') {
            while at < chars.len() && chars[at] != '\n' {
                at += 1;
            }
        } else if c == '/' && next == Some('*') {
            at = find(&chars, at + 2, "*/").ok_or("an unclosed /* comment")? + 2;
        } else if c == '/' && !matches!(tokens.last(), Some(Token::Ident(_) | Token::Str { .. } | Token::Punct(')' | ']'))) {
            // A slashy string (a regular expression): kept as written.
            let mut end = at + 1;
            while end < chars.len() && chars[end] != '/' {
                end += if chars[end] == '\\' { 2 } else { 1 };
            }
            tokens.push(Token::Str { value: chars[at + 1..end.min(chars.len())].iter().collect(), interpolated: false });
            at = end + 1;
        } else if c == '\'' || c == '"' {
            let triple = next == Some(c) && chars.get(at + 2) == Some(&c);
            let delimiter: String = if triple { [c, c, c].iter().collect() } else { c.to_string() };
            let body_start = at + delimiter.len();
            let body_end = string_end(&chars, body_start, &delimiter).ok_or_else(|| format!("an unclosed {delimiter} string"))?;
            let raw: String = chars[body_start..body_end].iter().collect();
            tokens.push(Token::Str { value: unescape(&raw), interpolated: c == '"' });
            at = body_end + delimiter.len();
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let mut end = at;
            while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_' || chars[end] == '$') {
                end += 1;
            }
            tokens.push(Token::Ident(chars[at..end].iter().collect()));
            at = end;
        } else if c.is_ascii_digit() {
            while at < chars.len() && chars[at].is_ascii_alphanumeric() {
                at += 1;
            }
        } else {
            tokens.push(Token::Punct(c));
            at += 1;
        }
    }
    Ok(tokens)
}

fn find(chars: &[char], from: usize, needle: &str) -> Option<usize> {
    let needle: Vec<char> = needle.chars().collect();
    (from..chars.len()).find(|&at| chars[at..].starts_with(&needle))
}

/// Where a string opened with `delimiter` ends (backslash escapes skipped; in a GString, `${…}`
/// with its own strings skipped too).
fn string_end(chars: &[char], mut at: usize, delimiter: &str) -> Option<usize> {
    let delimiter: Vec<char> = delimiter.chars().collect();
    let interpolated = delimiter[0] == '"';
    while at < chars.len() {
        if chars[at] == '\\' {
            at += 2;
        } else if chars[at..].starts_with(&delimiter) {
            return Some(at);
        } else if interpolated && chars[at] == '$' && chars.get(at + 1) == Some(&'{') {
            let mut depth = 0;
            while at < chars.len() {
                match chars[at] {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    quote @ ('\'' | '"') => at = string_end(chars, at + 1, &quote.to_string())?,
                    _ => {}
                }
                at += 1;
            }
            at += 1;
        } else {
            at += 1;
        }
    }
    None
}

/// Groovy's escapes in a string literal; a backslash before a line end continues the line.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('\n') => {}
            Some(other) => out.push(other), // \\ \' \" \$ and the rest
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = r#"
// A comment with a 'quote'
def wrap(String body) {
    return '''set -eu
''' + body
}
def isImage() {
    return (env.SOURCE_IMAGE ?: '').trim() != ''
}
def check(String name) {
    if (!(name ==~ /[A-Z_]+/)) { error("bad '${name}' ${x ? 'a' : "b"}") }
    return true
}
pipeline {
    agent any
    stages {
        stage('Check') {
            steps { script { echo("Build ${env.BUILD_UUID}: ${isImage() ? 'image ' + env.SOURCE_IMAGE : 'sources'}") } }
        }
        stage('Build') {
            when { expression { !isImage() } }
            steps {
                script {
                    writeFile(file: 'a.sh', text: '@@A@@', encoding: 'Base64')
                    withEnv(environment) {
                        sh(label: 'Build it', script: wrap('''docker build''' + flags + ' \'ctx\'\n'))
                    }
                    sh(script: 'echo done\\')
                }
            }
        }
    }
    post { always { sh(label: 'Clean up', script: '''rm -rf x''') } }
}
"#;

    #[test]
    fn stages_conditions_and_steps_are_read_with_their_strings() {
        let pipeline = parse(SCRIPT).expect("readable").expect("a pipeline");
        let names: Vec<&str> = pipeline.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["Check", "Build"]);
        assert_eq!(pipeline.stages[0].when, When::Always);
        assert!(pipeline.stages[0].steps.is_empty());
        assert_eq!(pipeline.stages[1].when, When::Expression { function: "isImage".into(), negated: true });
        let [Step::WriteFile { file, text, encoding }, Step::Sh { label, script, with_env }, Step::Sh { label: no_label, script: plain, with_env: outside }] =
            &pipeline.stages[1].steps[..]
        else {
            panic!("steps: {:?}", pipeline.stages[1].steps)
        };
        assert_eq!((file.as_str(), encoding.as_deref()), ("a.sh", Some("Base64")));
        assert_eq!(text.fill(&|_| None).expect("literal"), "@@A@@");
        assert_eq!((label.as_deref(), with_env.as_deref()), (Some("Build it"), Some("environment")));
        let flags = |name: &str| (name == "flags").then(|| " --build-arg A".to_owned());
        assert_eq!(script.fill(&flags).expect("filled"), "set -eu\ndocker build --build-arg A 'ctx'\n");
        assert!(script.fill(&|_| None).unwrap_err().contains("flags"));
        assert_eq!((no_label, outside), (&None, &None));
        assert_eq!(plain.fill(&|_| None).expect("literal"), "echo done\\");
        assert_eq!(pipeline.post_always.len(), 1);
    }

    #[test]
    fn a_script_without_a_declarative_pipeline_has_none() {
        assert_eq!(parse("node { sh 'make' }").expect("readable"), None);
    }

    #[test]
    fn the_shuttle_pipeline_is_read_whole() {
        let xml = include_str!("../../jenkins/config.xml");
        let script = crate::job_config::parse(xml).expect("valid").script.expect("a script");
        let pipeline = parse(&script).expect("readable").expect("a pipeline");
        let names: Vec<&str> = pipeline.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["Check", "Prepare", "Build", "Pull", "Push"]);
        let Step::Sh { script, with_env, .. } = &pipeline.stages[2].steps[0] else { panic!("Build: {:?}", pipeline.stages[2].steps) };
        assert_eq!(with_env.as_deref(), Some("environment"));
        let filled = script.fill(&|name| (name == "flags").then(|| " --build-arg A".to_owned())).expect("filled");
        assert!(filled.starts_with("set +x\nset -eu\n"), "{filled}");
        assert!(filled.ends_with("docker build --build-arg A --tag \"$DESTINATION_IMAGE\" sources\n"), "{filled}");
        assert!(filled.contains("registry_of() {"), "the preamble's helper: {filled}");
    }
}
