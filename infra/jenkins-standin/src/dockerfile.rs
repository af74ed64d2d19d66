//! The instructions of a Dockerfile, as the classic `docker build` lists them (`Step i/N : …`):
//! parser directives, comments and empty lines skipped, line continuations joined (with the
//! escape character of the `# escape=` directive), heredoc bodies of RUN/COPY/ADD kept out.

use std::time::Duration;

const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// The keyword in capitals: `RUN`.
    pub keyword: String,
    /// The instruction as written, continuations joined: `RUN apt-get update &&     apt-get install x`.
    pub text: String,
    /// What follows the keyword, trimmed.
    pub arguments: String,
}

/// What a simulated `RUN` does.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEffect {
    /// Nothing to wait for.
    Instant,
    /// `RUN sleep N`: takes that long.
    Sleep(Duration),
    /// `RUN false` or `RUN exit N` (N ≠ 0): the build step fails with that code.
    Fail(i32),
}

/// The instructions, or the error `docker build` would report.
pub fn parse(content: &str) -> Result<Vec<Instruction>, String> {
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let mut escape = '\\';
    let mut lines = content.lines().map(|l| l.strip_suffix('\r').unwrap_or(l)).enumerate().peekable();
    // Parser directives: only at the very top, before any comment, empty line or instruction.
    while let Some((_, line)) = lines.peek() {
        let Some(directive) = line.strip_prefix('#') else { break };
        let Some((key, value)) = directive.split_once('=') else { break };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphabetic()) {
            break;
        }
        if key.eq_ignore_ascii_case("escape") {
            escape = match value.trim() {
                "`" => '`',
                "\\" => '\\',
                other => return Err(format!("invalid escape token '{other}' does not match ` or \\")),
            };
        }
        lines.next();
    }
    let mut instructions = Vec::new();
    let mut heredocs: Vec<(String, bool)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, line) in lines {
        if let Some((word, strip_tabs)) = heredocs.first() {
            let candidate = if *strip_tabs { line.trim_start_matches('\t') } else { line };
            if candidate == word {
                heredocs.remove(0);
            }
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue; // comments and empty lines, also inside a continued instruction
        }
        let (number, mut text) = pending.take().unwrap_or((index + 1, String::new()));
        let without_space = line.trim_end();
        if let Some(continued) = without_space.strip_suffix(escape) {
            text.push_str(continued);
            pending = Some((number, text));
            continue;
        }
        text.push_str(line);
        let instruction = instruction(number, text.trim())?;
        if matches!(instruction.keyword.as_str(), "RUN" | "COPY" | "ADD") {
            heredocs = heredoc_words(&instruction.arguments);
        }
        instructions.push(instruction);
    }
    if let Some((number, text)) = pending {
        instructions.push(instruction(number, text.trim())?);
    }
    Ok(instructions)
}

fn instruction(line_number: usize, text: &str) -> Result<Instruction, String> {
    let (word, arguments) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let keyword = word.to_ascii_uppercase();
    if !INSTRUCTIONS.contains(&keyword.as_str()) {
        return Err(format!("dockerfile parse error line {line_number}: unknown instruction: {keyword}"));
    }
    let arguments = arguments.trim().to_owned();
    if arguments.is_empty() {
        return Err(format!("dockerfile parse error line {line_number}: {keyword} requires at least one argument"));
    }
    Ok(Instruction { keyword, text: text.to_owned(), arguments })
}

/// `<<EOF`, `<<-EOF`, `<<"EOF"` in the arguments: the words that end the heredoc bodies.
fn heredoc_words(arguments: &str) -> Vec<(String, bool)> {
    let mut words = Vec::new();
    let mut rest = arguments;
    while let Some(at) = rest.find("<<") {
        let after = &rest[at + 2..];
        let (strip_tabs, after) = match after.strip_prefix('-') {
            Some(after) => (true, after),
            None => (false, after),
        };
        let word: String = after.chars().take_while(|c| !c.is_whitespace() && *c != '<').filter(|c| *c != '"' && *c != '\'').collect();
        if !word.is_empty() {
            words.push((word, strip_tabs));
        }
        rest = after;
    }
    words
}

impl Instruction {
    /// What a `RUN` of this instruction does in the simulation.
    pub fn run_effect(&self) -> RunEffect {
        if self.keyword != "RUN" {
            return RunEffect::Instant;
        }
        let words: Vec<String> = match serde_json::from_str::<Vec<String>>(&self.arguments) {
            Ok(exec_form) => exec_form,
            Err(_) => self.arguments.split_whitespace().map(str::to_owned).collect(),
        };
        match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["sleep", duration] => parse_sleep(duration).map(RunEffect::Sleep).unwrap_or(RunEffect::Fail(1)),
            ["false"] => RunEffect::Fail(1),
            ["exit", code] => match code.parse::<i32>() {
                Ok(0) => RunEffect::Instant,
                Ok(code) => RunEffect::Fail(code & 0xff),
                Err(_) => RunEffect::Fail(2),
            },
            _ => RunEffect::Instant,
        }
    }
}

/// `sleep`'s argument: seconds (fractions allowed), or with a suffix `s`, `m`, `h`.
fn parse_sleep(raw: &str) -> Option<Duration> {
    let (number, unit) = match raw.char_indices().last()? {
        (i, 's') => (&raw[..i], 1.0),
        (i, 'm') => (&raw[..i], 60.0),
        (i, 'h') => (&raw[..i], 3600.0),
        _ => (raw, 1.0),
    };
    let seconds: f64 = number.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds * unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(content: &str) -> Vec<String> {
        parse(content).expect("valid").into_iter().map(|i| i.text).collect()
    }

    #[test]
    fn continuations_are_joined_and_comments_skipped() {
        let content = "# syntax=docker/dockerfile:1\n\nFROM node:20 AS build\n# a comment\nRUN apt-get update && \\\n    # inside\n\n    apt-get install -y curl\nCOPY . /app\r\nCMD [\"node\", \"index.js\"]";
        assert_eq!(
            texts(content),
            ["FROM node:20 AS build", "RUN apt-get update &&     apt-get install -y curl", "COPY . /app", "CMD [\"node\", \"index.js\"]"]
        );
    }

    #[test]
    fn the_escape_directive_changes_the_continuation_character() {
        let content = "# escape=`\nFROM mcr.microsoft.com/windows\nRUN dir c:\\ `\n  && echo done\n";
        assert_eq!(texts(content), ["FROM mcr.microsoft.com/windows", "RUN dir c:\\   && echo done"]);
    }

    #[test]
    fn a_directive_after_a_comment_is_a_comment() {
        let content = "# hello\n# escape=`\nFROM alpine\nRUN echo a \\\n b\n";
        assert_eq!(texts(content), ["FROM alpine", "RUN echo a  b"]);
    }

    #[test]
    fn heredoc_bodies_are_not_instructions() {
        let content = "FROM alpine\nRUN <<EOF\nset -e\nNOT AN INSTRUCTION\nEOF\nCOPY <<-\"END\" /x\n\thello\n\tEND\nUSER nobody\n";
        assert_eq!(texts(content), ["FROM alpine", "RUN <<EOF", "COPY <<-\"END\" /x", "USER nobody"]);
    }

    #[test]
    fn unknown_instructions_fail_like_docker() {
        assert_eq!(parse("FROM alpine\nFOO bar\n").unwrap_err(), "dockerfile parse error line 2: unknown instruction: FOO");
    }

    #[test]
    fn run_effects() {
        let effect = |text: &str| parse(&format!("FROM a\n{text}\n")).expect("valid")[1].run_effect();
        assert_eq!(effect("RUN sleep 2"), RunEffect::Sleep(Duration::from_secs(2)));
        assert_eq!(effect("run sleep 0.25"), RunEffect::Sleep(Duration::from_millis(250)));
        assert_eq!(effect("RUN [\"sleep\", \"1m\"]"), RunEffect::Sleep(Duration::from_secs(60)));
        assert_eq!(effect("RUN false"), RunEffect::Fail(1));
        assert_eq!(effect("RUN exit 3"), RunEffect::Fail(3));
        assert_eq!(effect("RUN exit 0"), RunEffect::Instant);
        assert_eq!(effect("RUN echo sleep 5"), RunEffect::Instant);
        assert_eq!(effect("CMD sleep 5"), RunEffect::Instant);
    }
}
