//! Builds doing their work: the real `prepare-sources.sh` on a real archive, the simulated
//! Docker steps, the growing log read with `progressiveText` (console notes stripped, raw
//! offsets), stop, failures, and secrets.

mod common;

use std::time::{Duration, Instant};

use common::{spawn, unique, Harness};
use reqwest::StatusCode;
use serde_json::Value;

const DESTINATION: &str = "registry.example.com:5000/org/app:1.2";

async fn archive_build(jenkins: &Harness, dockerfile: &str, extra: &[(&str, &str)]) -> (String, u64) {
    let job = unique("app");
    jenkins.create_job(&job, false).await;
    let sources = common::serve_archive(common::tar_gz(&[("Dockerfile", dockerfile), ("src/index.js", "console.log(1)\n")])).await;
    let mut parameters = vec![("BUILD_UUID", "uuid-1"), ("SOURCES_URL", sources.as_str()), ("DESTINATION_IMAGE", DESTINATION)];
    parameters.extend_from_slice(extra);
    let id = jenkins.trigger(&job, &parameters).await;
    let number = jenkins.wait_started(id).await;
    (job, number)
}

struct Chunk {
    text: String,
    text_size: u64,
    more_data: bool,
}

async fn progressive(jenkins: &Harness, job: &str, number: u64, start: u64) -> Chunk {
    let response = jenkins.get(&format!("job/{job}/{number}/logText/progressiveText?start={start}")).send().await.expect("send");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/plain;charset=UTF-8");
    let text_size = response.headers()["x-text-size"].to_str().expect("size").parse().expect("number");
    let more_data = match response.headers().get("x-more-data") {
        Some(value) => {
            assert_eq!(value, "true");
            true
        }
        None => false,
    };
    Chunk { text: response.text().await.expect("text"), text_size, more_data }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progressive_text_follows_the_cursor_to_the_whole_log() {
    let jenkins = spawn().await;
    let dockerfile = "FROM node:20 AS build\nWORKDIR /app\nRUN sleep 0.4\nCOPY . .\nRUN sleep 0.4\n\nFROM node:20-slim\nCOPY --from=build /app /app\nCMD [\"node\", \"index.js\"]\n";
    let (job, number) = archive_build(&jenkins, dockerfile, &[("BUILD_ARGS", r#"{"NODE_ENV":"production"}"#)]).await;

    let mut cursor = 0;
    let mut collected = String::new();
    let mut chunks_while_running = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let chunk = progressive(&jenkins, &job, number, cursor).await;
        // X-Text-Size is the raw end offset: console notes count there, not in the body.
        assert!(chunk.text_size >= cursor + chunk.text.len() as u64, "{} < {cursor} + {}", chunk.text_size, chunk.text.len());
        assert_no_notes(&chunk.text);
        collected.push_str(&chunk.text);
        cursor = chunk.text_size;
        if !chunk.more_data {
            break;
        }
        chunks_while_running += 1;
        assert!(Instant::now() < deadline, "the build never ended:\n{collected}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(chunks_while_running >= 3, "X-More-Data: true while running ({chunks_while_running} reads)");
    let build = jenkins.build(&job, number).await;
    assert_eq!(build["building"], false);
    assert_eq!(build["result"], "SUCCESS", "{collected}");

    let console = jenkins.console(&job, number).await;
    assert_eq!(collected, console, "the chunks make the whole log");
    assert_no_notes(&console);
    assert!(cursor > console.len() as u64, "the raw log has notes: {cursor} bytes raw, {} served", console.len());
    assert!(console.ends_with("Finished: SUCCESS\n"), "{console}");
    for line in [
        "Started by user admin\n",
        "[Pipeline] Start of Pipeline\n",
        &format!("Running on Jenkins in /var/jenkins_home/workspace/{job}\n"),
        "[prepare] extracted tar.gz (",
        "[prepare] flattened top-level folder 'app-1.0'\n",
        "[prepare] added ARG NODE_ENV after 2 FROM lines\n",
        "+ docker build --build-arg NODE_ENV -t registry.example.com:5000/org/app:1.2 .\n",
        "Step 1/10 : FROM node:20 AS build\n",
        "Step 2/10 : ARG NODE_ENV\n",
        "Step 4/10 : RUN sleep 0.4\n",
        "Step 8/10 : ARG NODE_ENV\n",
        "Step 10/10 : CMD [\"node\", \"index.js\"]\n",
        "(simulated: no Docker engine on this machine)",
        "+ docker push registry.example.com:5000/org/app:1.2\n",
    ] {
        assert!(console.contains(line), "{line:?} missing from:\n{console}");
    }
    assert!(!console.contains("docker push registry.example.com:5000/org/app:latest"), "no :latest unless asked");
    assert!(!console.contains("sig-must-not-show"), "the link's signature never shows");
    assert!(build["duration"].as_u64().expect("duration") >= 800, "the sleeps took their time");

    // At the end: no more data, and a start beyond the end reads from 0 again.
    let end = progressive(&jenkins, &job, number, cursor).await;
    assert_eq!((end.text.as_str(), end.text_size, end.more_data), ("", cursor, false));
    let beyond = progressive(&jenkins, &job, number, cursor + 1000).await;
    assert_eq!(beyond.text, console);
    assert_eq!(beyond.text_size, cursor);
}

/// No console note (nor a part of one) in text Jenkins serves as plain text.
fn assert_no_notes(text: &str) {
    assert!(!text.contains("\x1b[8m") && !text.contains("\x1b[0m") && !text.contains("ha:////"), "a console note was served: {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progressive_text_of_a_finished_build_is_console_text_at_the_raw_length() {
    let jenkins = spawn().await;
    let (job, number) = archive_build(&jenkins, "FROM alpine:3.20\nRUN echo hello\n", &[]).await;
    let build = jenkins.wait_finished(&job, number).await;
    assert_eq!(build["result"], "SUCCESS");
    let console = jenkins.console(&job, number).await;
    assert_no_notes(&console);
    assert!(
        console.starts_with("Started by user admin\n[Pipeline] Start of Pipeline\n[Pipeline] node\nRunning on Jenkins in "),
        "{console}"
    );
    assert!(console.contains("\n[Pipeline] sh\n") && console.contains("\n[Pipeline] // stage\n"), "{console}");

    let whole = progressive(&jenkins, &job, number, 0).await;
    assert_eq!(whole.text, console, "progressiveText from 0 is consoleText, byte for byte");
    assert!(!whole.more_data);
    let raw_length = whole.text_size;
    let pipeline_lines = console.lines().filter(|line| line.starts_with("[Pipeline] ")).count() as u64;
    assert!(pipeline_lines >= 10, "{console}");
    // Every `[Pipeline]` line and the user and node links carry a note of 200 bytes or more.
    assert!(raw_length >= console.len() as u64 + 200 * (pipeline_lines + 2), "{raw_length} raw bytes for {} served", console.len());
    // X-Text-Size is exactly the raw length: from there nothing, beyond it from 0 again.
    let at_end = progressive(&jenkins, &job, number, raw_length).await;
    assert_eq!((at_end.text.as_str(), at_end.text_size), ("", raw_length));
    let beyond = progressive(&jenkins, &job, number, raw_length + 1).await;
    assert_eq!((beyond.text.as_str(), beyond.text_size), (console.as_str(), raw_length));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_aborts_a_running_build_shortly_after_and_interrupts_its_sleep() {
    let jenkins = spawn().await;
    let (job, number) = archive_build(&jenkins, "FROM alpine:3.20\nRUN sleep 30\nRUN echo never\n", &[]).await;
    jenkins.wait_log(&job, number, "RUN sleep 30").await;

    let stopped = Instant::now();
    let response = jenkins.post(&format!("job/{job}/{number}/stop")).send().await.expect("send");
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], jenkins.url(&format!("job/{job}/{number}/")));
    let right_after = jenkins.build(&job, number).await;
    assert_eq!(right_after["building"], true, "ABORTED shortly after, not at once");
    assert!(right_after["result"].is_null());

    let build = jenkins.wait_finished(&job, number).await;
    let took = stopped.elapsed();
    assert_eq!(build["result"], "ABORTED");
    assert!(took >= jenkins.config.abort_delay, "{took:?}");
    assert!(took < Duration::from_secs(10), "the sleep was not interrupted: {took:?}");
    let console = jenkins.console(&job, number).await;
    assert!(console.contains("Aborted by admin\n"), "{console}");
    assert_no_notes(&console);
    assert!(!console.contains("RUN echo never"), "{console}");
    assert!(console.ends_with("Finished: ABORTED\n"), "{console}");

    // Stopping a finished build changes nothing.
    let again = jenkins.post(&format!("job/{job}/{number}/stop")).send().await.expect("send");
    assert_eq!(again.status(), StatusCode::FOUND);
    assert_eq!(jenkins.console(&job, number).await, console);
    assert_eq!(jenkins.build(&job, number).await["result"], "ABORTED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_without_from_fail_the_build() {
    let jenkins = spawn().await;
    let (job, number) = archive_build(&jenkins, "# no base image here\nRUN echo hello\n", &[]).await;
    let build = jenkins.wait_finished(&job, number).await;
    assert_eq!(build["result"], "FAILURE");
    let console = jenkins.console(&job, number).await;
    assert!(console.contains("[prepare] error: Dockerfile has no FROM instruction\n"), "{console}");
    assert!(console.contains("ERROR: script returned exit code 1\n"), "{console}");
    assert!(!console.contains("docker build"), "{console}");
    assert!(console.ends_with("Finished: FAILURE\n"), "{console}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_instruction_fails_the_build() {
    let jenkins = spawn().await;
    let (job, number) = archive_build(&jenkins, "FROM alpine:3.20\nRUN exit 3\nRUN echo never\n", &[]).await;
    let build = jenkins.wait_finished(&job, number).await;
    assert_eq!(build["result"], "FAILURE");
    let console = jenkins.console(&job, number).await;
    assert!(console.contains("The command '/bin/sh -c exit 3' returned a non-zero code: 3\n"), "{console}");
    assert!(console.contains("ERROR: script returned exit code 3\n"), "{console}");
    assert!(!console.contains("docker push"), "{console}");
    assert!(console.ends_with("Finished: FAILURE\n"), "{console}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_source_is_pulled_tagged_and_pushed_with_latest() {
    let jenkins = spawn().await;
    let job = unique("app");
    jenkins.create_job(&job, false).await;
    let id = jenkins
        .trigger(
            &job,
            &[
                ("SOURCE_IMAGE", "docker.example.com/base/app:7"),
                ("SOURCE_REGISTRY_USER", "puller"),
                ("DESTINATION_IMAGE", DESTINATION),
                ("DESTINATION_LATEST", "true"),
            ],
        )
        .await;
    let number = jenkins.wait_started(id).await;
    let build = jenkins.wait_finished(&job, number).await;
    assert_eq!(build["result"], "SUCCESS");
    let console = jenkins.console(&job, number).await;
    for line in [
        "+ docker login -u puller --password-stdin docker.example.com\n",
        "+ docker pull docker.example.com/base/app:7\n",
        "+ docker tag docker.example.com/base/app:7 registry.example.com:5000/org/app:1.2\n",
        "+ docker push registry.example.com:5000/org/app:1.2\n",
        "+ docker push registry.example.com:5000/org/app:latest\n",
        "(simulated: no Docker engine on this machine)",
    ] {
        assert!(console.contains(line), "{line:?} missing from:\n{console}");
    }
    assert!(!console.contains("[prepare]"), "no sources to prepare");
    assert!(console.ends_with("Finished: SUCCESS\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_parameters_never_appear_in_json_or_logs() {
    let jenkins = spawn().await;
    let secrets = ["src-pw-0a9b8c", "push-pw-7d6e5f", "arg-value-4b3c2d"];
    let build_args = format!(r#"{{"API_TOKEN":"{}","NODE_ENV":"production"}}"#, secrets[2]);
    let (job, number) = archive_build(
        &jenkins,
        // Secrets written in the sources show masked, as Jenkins masks password parameter values.
        "FROM alpine:3.20\nRUN echo $API_TOKEN src-pw-0a9b8c arg-value-4b3c2d\n",
        &[
            ("SOURCE_REGISTRY_PASSWORD", secrets[0]),
            ("REGISTRY_USER", "pusher"),
            ("REGISTRY_PASSWORD", secrets[1]),
            ("BUILD_ARGS", build_args.as_str()),
        ],
    )
    .await;
    let (_, item) = jenkins.json("queue/api/json").await;
    let mut seen: Vec<String> = vec![item.to_string()];
    let left = jenkins.build(&job, number).await["queueId"].as_u64().expect("queue id");
    let (_, left_item) = jenkins.json(&format!("queue/item/{left}/api/json")).await;
    let params = left_item["params"].as_str().expect("params");
    assert!(params.contains("\nREGISTRY_PASSWORD=****") && params.contains("\nBUILD_ARGS=****"), "{params}");
    seen.push(left_item.to_string());
    let build = jenkins.wait_finished(&job, number).await;
    assert_eq!(build["result"], "SUCCESS");
    let password_values: Vec<&Value> = build["actions"][0]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter(|p| common::PASSWORD_PARAMETERS.contains(&p["name"].as_str().expect("name")))
        .collect();
    assert_eq!(password_values.len(), 3);
    for parameter in password_values {
        assert_eq!(parameter["_class"], "hudson.model.PasswordParameterValue");
        assert!(parameter.get("value").is_none(), "{parameter}");
    }
    seen.push(build.to_string());
    seen.push(jenkins.json(&format!("job/{job}/api/json")).await.1.to_string());
    seen.push(jenkins.json(&format!("job/{job}/api/json?tree=allBuilds[actions[parameters[name,value]]],property[parameterDefinitions[name,defaultParameterValue[name,value]]]")).await.1.to_string());
    let console = jenkins.console(&job, number).await;
    assert!(console.contains("+ docker login -u pusher --password-stdin registry.example.com:5000\n"), "{console}");
    assert!(console.contains(" : RUN echo $API_TOKEN **** ****\n"), "{console}");
    seen.push(console);
    seen.push(jenkins.http.get(jenkins.url("__standin/requests")).send().await.expect("send").text().await.expect("text"));
    for text in &seen {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} leaked in:\n{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_text_shows_in_the_log_of_a_running_build() {
    let jenkins = spawn().await;
    let (job, number) = archive_build(&jenkins, "FROM alpine:3.20\nRUN sleep 30\n", &[]).await;
    jenkins.wait_log(&job, number, "RUN sleep 30").await;
    let before = progressive(&jenkins, &job, number, 0).await;
    let appended =
        jenkins.http.post(jenkins.url(&format!("job/{job}/{number}/__standin/append"))).body("marker 1234\n").send().await.expect("send");
    assert_eq!(appended.status(), StatusCode::NO_CONTENT);
    let after = progressive(&jenkins, &job, number, before.text_size).await;
    assert_eq!(after.text, "marker 1234\n");
    assert_eq!(after.text_size, before.text_size + 12, "appended as given, without a note");
    assert!(after.more_data);

    jenkins.post(&format!("job/{job}/{number}/stop")).send().await.expect("stop");
    jenkins.wait_finished(&job, number).await;
    let late = jenkins.http.post(jenkins.url(&format!("job/{job}/{number}/__standin/append"))).body("late\n").send().await.expect("send");
    assert_eq!(late.status(), StatusCode::CONFLICT);
}
