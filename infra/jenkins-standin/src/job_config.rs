//! What the stand-in reads from an item's `config.xml`: whether it is a folder or a job, the job
//! type, the parameter definitions, whether concurrent builds are allowed and a pipeline's script
//! (read by [`crate::script`]). Everything else (triggers, build discarders, a folder's
//! properties…) is kept verbatim but not interpreted.

use quick_xml::events::Event;
use quick_xml::Reader;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// `<flow-definition>`: `org.jenkinsci.plugins.workflow.job.WorkflowJob`.
    Pipeline,
    /// `<project>`: `hudson.model.FreeStyleProject`.
    Freestyle,
}

impl JobKind {
    pub fn job_class(self) -> &'static str {
        match self {
            JobKind::Pipeline => "org.jenkinsci.plugins.workflow.job.WorkflowJob",
            JobKind::Freestyle => "hudson.model.FreeStyleProject",
        }
    }

    pub fn run_class(self) -> &'static str {
        match self {
            JobKind::Pipeline => "org.jenkinsci.plugins.workflow.job.WorkflowRun",
            JobKind::Freestyle => "hudson.model.FreeStyleBuild",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParameterKind {
    String,
    Text,
    Password,
    Boolean,
    Choice(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterDefinition {
    pub name: String,
    pub kind: ParameterKind,
    pub default: String,
    pub description: String,
    pub trim: bool,
}

impl ParameterDefinition {
    /// `hudson.model.StringParameterDefinition` and so on.
    pub fn class(&self) -> &'static str {
        match self.kind {
            ParameterKind::String => "hudson.model.StringParameterDefinition",
            ParameterKind::Text => "hudson.model.TextParameterDefinition",
            ParameterKind::Password => "hudson.model.PasswordParameterDefinition",
            ParameterKind::Boolean => "hudson.model.BooleanParameterDefinition",
            ParameterKind::Choice(_) => "hudson.model.ChoiceParameterDefinition",
        }
    }

    pub fn default_value(&self) -> ParameterValue {
        let value = match &self.kind {
            ParameterKind::Choice(choices) => choices.first().cloned().unwrap_or_default(),
            ParameterKind::Boolean => (self.default.trim() == "true").to_string(),
            _ => self.default.clone(),
        };
        self.value_of(value)
    }

    /// The value a build gets from what was submitted, as Jenkins' `createValue` makes it.
    pub fn submitted_value(&self, submitted: &str) -> Result<ParameterValue, String> {
        match &self.kind {
            ParameterKind::Password if submitted == "<DEFAULT>" => Ok(self.default_value()),
            ParameterKind::Boolean => Ok(self.value_of(submitted.eq_ignore_ascii_case("true").to_string())),
            ParameterKind::Choice(choices) if !choices.iter().any(|c| c == submitted) => {
                Err(format!("Illegal choice for parameter {}: {submitted}", self.name))
            }
            ParameterKind::String | ParameterKind::Text if self.trim => Ok(self.value_of(submitted.trim().to_owned())),
            _ => Ok(self.value_of(submitted.to_owned())),
        }
    }

    fn value_of(&self, value: String) -> ParameterValue {
        let kind = match self.kind {
            ParameterKind::Password => ValueKind::Password,
            ParameterKind::Boolean => ValueKind::Boolean,
            ParameterKind::Text => ValueKind::Text,
            ParameterKind::String | ParameterKind::Choice(_) => ValueKind::String,
        };
        ParameterValue { name: self.name.clone(), kind, value }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    String,
    Text,
    Password,
    Boolean,
}

/// One parameter of a queue item or a build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterValue {
    pub name: String,
    pub kind: ValueKind,
    pub value: String,
}

impl ParameterValue {
    pub fn class(&self) -> &'static str {
        match self.kind {
            ValueKind::String => "hudson.model.StringParameterValue",
            ValueKind::Text => "hudson.model.TextParameterValue",
            ValueKind::Password => "hudson.model.PasswordParameterValue",
            ValueKind::Boolean => "hudson.model.BooleanParameterValue",
        }
    }

    pub fn is_secret(&self) -> bool {
        self.kind == ValueKind::Password
    }

    /// `NAME=value`, and `NAME=****` for a password, as in a queue item's `params`.
    pub fn short_description(&self) -> String {
        if self.is_secret() {
            format!("{}=****", self.name)
        } else {
            format!("{}={}", self.name, self.value)
        }
    }

    /// The exported form: a password parameter has no `value`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({"_class": self.class(), "name": self.name});
        match self.kind {
            ValueKind::Password => {}
            ValueKind::Boolean => json["value"] = serde_json::Value::Bool(self.value == "true"),
            ValueKind::String | ValueKind::Text => json["value"] = serde_json::Value::String(self.value.clone()),
        }
        json
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobDefinition {
    pub kind: JobKind,
    pub parameters: Vec<ParameterDefinition>,
    pub concurrent: bool,
    pub description: Option<String>,
    /// A pipeline's `<definition><script>`.
    pub script: Option<String>,
}

/// A folder's `config.xml`: `<com.cloudbees.hudson.plugins.folder.Folder plugin="cloudbees-folder@…">`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderDefinition {
    pub description: Option<String>,
}

/// What a `config.xml` defines, told by its root element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemDefinition {
    Job(JobDefinition),
    Folder(FolderDefinition),
}

/// The root element of a folder's `config.xml` (the class of a folder).
pub const FOLDER_ROOT: &str = "com.cloudbees.hudson.plugins.folder.Folder";

/// Reads a job's `config.xml`. An error is a sentence about what is wrong with it.
pub fn parse(xml: &str) -> Result<JobDefinition, String> {
    match parse_item(xml)? {
        ItemDefinition::Job(job) => Ok(job),
        ItemDefinition::Folder(_) => Err(format!("<{FOLDER_ROOT}> is a folder, not a job")),
    }
}

/// Reads the `config.xml` of a job or a folder. An error is a sentence about what is wrong with it.
pub fn parse_item(xml: &str) -> Result<ItemDefinition, String> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut kind = None;
    let mut parameters = Vec::new();
    let mut current: Option<ParameterDefinition> = None;
    let mut concurrent_element: Option<bool> = None;
    let mut disable_concurrent_property = false;
    let mut description = None;
    let mut script = None;
    loop {
        let event = reader.read_event().map_err(|e| format!("config.xml is not well-formed XML: {e}"))?;
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                if path.is_empty() {
                    kind = Some(match name.as_str() {
                        "flow-definition" => Some(JobKind::Pipeline),
                        "project" => Some(JobKind::Freestyle),
                        FOLDER_ROOT => None,
                        other => {
                            return Err(format!(
                                "unsupported item type <{other}>: the stand-in knows <flow-definition>, <project> and <{FOLDER_ROOT}>"
                            ))
                        }
                    });
                }
                if name.ends_with("DisableConcurrentBuildsJobProperty") {
                    disable_concurrent_property = true;
                }
                if name.ends_with("ParameterDefinition") && path.last().is_some_and(|parent| parent == "parameterDefinitions") {
                    let simple = name.rsplit('.').next().unwrap_or(&name);
                    let kind = match simple {
                        "PasswordParameterDefinition" => ParameterKind::Password,
                        "BooleanParameterDefinition" => ParameterKind::Boolean,
                        "TextParameterDefinition" => ParameterKind::Text,
                        "ChoiceParameterDefinition" => ParameterKind::Choice(Vec::new()),
                        _ => ParameterKind::String,
                    };
                    current = Some(ParameterDefinition {
                        name: String::new(),
                        kind,
                        default: String::new(),
                        description: String::new(),
                        trim: false,
                    });
                }
                text.clear();
                if matches!(event, Event::Start(_)) {
                    path.push(name);
                } else {
                    path.push(name);
                    end_element(
                        &mut path,
                        &mut text,
                        &mut current,
                        &mut parameters,
                        &mut concurrent_element,
                        &mut description,
                        &mut script,
                    );
                }
            }
            Event::End(_) => {
                end_element(&mut path, &mut text, &mut current, &mut parameters, &mut concurrent_element, &mut description, &mut script)
            }
            Event::Text(t) => text.push_str(&t.xml10_content().map_err(|e| format!("config.xml: {e}"))?),
            Event::CData(t) => text.push_str(&t.decode().map_err(|e| format!("config.xml: {e}"))?),
            Event::GeneralRef(r) => {
                if let Some(c) = r.resolve_char_ref().map_err(|e| format!("config.xml: {e}"))? {
                    text.push(c);
                } else {
                    let entity = r.decode().map_err(|e| format!("config.xml: {e}"))?;
                    let resolved = quick_xml::escape::resolve_predefined_entity(&entity)
                        .ok_or_else(|| format!("config.xml: unknown entity &{entity};"))?;
                    text.push_str(resolved);
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    let kind = kind.ok_or("config.xml has no root element")?;
    if !path.is_empty() {
        return Err("config.xml ends inside an element".to_owned());
    }
    let Some(kind) = kind else { return Ok(ItemDefinition::Folder(FolderDefinition { description })) };
    let concurrent = match kind {
        JobKind::Pipeline => !disable_concurrent_property && concurrent_element != Some(false),
        JobKind::Freestyle => concurrent_element == Some(true),
    };
    Ok(ItemDefinition::Job(JobDefinition { kind, parameters, concurrent, description, script }))
}

fn end_element(
    path: &mut Vec<String>,
    text: &mut String,
    current: &mut Option<ParameterDefinition>,
    parameters: &mut Vec<ParameterDefinition>,
    concurrent_element: &mut Option<bool>,
    description: &mut Option<String>,
    script: &mut Option<String>,
) {
    let Some(name) = path.pop() else { return };
    let parent = path.last().map(String::as_str);
    if path.len() == 1 && name == "concurrentBuild" {
        *concurrent_element = Some(text.trim() == "true");
    }
    if path.len() == 2 && name == "script" && parent == Some("definition") {
        *script = Some(text.clone());
    }
    if path.len() == 1 && name == "description" {
        *description = Some(text.clone()).filter(|d| !d.is_empty());
    }
    if let Some(definition) = current.as_mut() {
        let in_definition = parent.is_some_and(|p| p.ends_with("ParameterDefinition"));
        match name.as_str() {
            "name" if in_definition => definition.name = text.trim().to_owned(),
            "defaultValue" if in_definition => definition.default = text.clone(),
            "description" if in_definition => definition.description = text.clone(),
            "trim" if in_definition => definition.trim = text.trim() == "true",
            "string" => {
                if let ParameterKind::Choice(choices) = &mut definition.kind {
                    choices.push(text.clone());
                }
            }
            "choices" if in_definition => {
                // Older configurations keep the choices as one text, one per line.
                if let ParameterKind::Choice(choices) = &mut definition.kind {
                    if choices.is_empty() && !text.trim().is_empty() {
                        choices.extend(text.lines().map(str::to_owned));
                    }
                }
            }
            _ if name.ends_with("ParameterDefinition") && parent == Some("parameterDefinitions") => {
                if let Some(done) = current.take() {
                    if !done.name.is_empty() {
                        parameters.push(done);
                    }
                }
            }
            _ => {}
        }
    }
    text.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str = r#"<?xml version='1.1' encoding='UTF-8'?>
<flow-definition plugin="workflow-job@1400.v7fd111b_ec82f">
  <description>One app &amp; its builds</description>
  <keepDependencies>false</keepDependencies>
  <properties>
    <org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty/>
    <hudson.model.ParametersDefinitionProperty>
      <parameterDefinitions>
        <hudson.model.StringParameterDefinition>
          <name>BUILD_UUID</name>
          <description>the shuttle&apos;s id</description>
          <defaultValue></defaultValue>
          <trim>true</trim>
        </hudson.model.StringParameterDefinition>
        <hudson.model.PasswordParameterDefinition>
          <name>REGISTRY_PASSWORD</name>
          <defaultValue>s&lt;cret</defaultValue>
        </hudson.model.PasswordParameterDefinition>
        <hudson.model.StringParameterDefinition>
          <name>DESTINATION_LATEST</name>
          <defaultValue>false</defaultValue>
        </hudson.model.StringParameterDefinition>
        <hudson.model.BooleanParameterDefinition>
          <name>VERBOSE</name>
          <defaultValue>true</defaultValue>
        </hudson.model.BooleanParameterDefinition>
        <hudson.model.ChoiceParameterDefinition>
          <name>MODE</name>
          <choices class="java.util.Arrays$ArrayList">
            <a class="string-array"><string>fast</string><string>slow</string></a>
          </choices>
        </hudson.model.ChoiceParameterDefinition>
      </parameterDefinitions>
    </hudson.model.ParametersDefinitionProperty>
  </properties>
  <definition class="org.jenkinsci.plugins.workflow.cps.CpsFlowDefinition">
    <script><![CDATA[node { sh 'echo <name>NOT_A_PARAMETER</name>' }]]></script>
    <sandbox>true</sandbox>
  </definition>
  <triggers/>
</flow-definition>"#;

    #[test]
    fn pipeline_parameters_defaults_and_concurrency_are_read() {
        let job = parse(PIPELINE).expect("valid");
        assert_eq!(job.kind, JobKind::Pipeline);
        assert!(!job.concurrent);
        assert_eq!(job.description.as_deref(), Some("One app & its builds"));
        let names: Vec<&str> = job.parameters.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["BUILD_UUID", "REGISTRY_PASSWORD", "DESTINATION_LATEST", "VERBOSE", "MODE"]);
        assert_eq!(job.parameters[0].description, "the shuttle's id");
        assert_eq!(job.script.as_deref(), Some("node { sh 'echo <name>NOT_A_PARAMETER</name>' }"));
        assert!(job.parameters[0].trim);
        assert_eq!(job.parameters[1].kind, ParameterKind::Password);
        assert_eq!(job.parameters[1].default, "s<cret");
        assert_eq!(job.parameters[2].default_value().value, "false");
        assert_eq!(job.parameters[3].default_value().to_json()["value"], true);
        assert_eq!(job.parameters[4].kind, ParameterKind::Choice(vec!["fast".into(), "slow".into()]));
        assert_eq!(job.parameters[4].default_value().value, "fast");
        assert!(job.parameters[4].submitted_value("medium").is_err());
        assert_eq!(job.parameters[0].submitted_value("  id ").expect("string").value, "id");
    }

    #[test]
    fn a_pipeline_runs_concurrently_unless_disabled() {
        let job = parse("<flow-definition><properties/></flow-definition>").expect("valid");
        assert!(job.concurrent);
        assert!(job.parameters.is_empty());
    }

    #[test]
    fn a_freestyle_project_is_serial_unless_concurrent_build_is_true() {
        assert!(!parse("<project><concurrentBuild>false</concurrentBuild></project>").expect("valid").concurrent);
        assert!(!parse("<project/>").expect("valid").concurrent);
        assert!(parse("<project><concurrentBuild>true</concurrentBuild></project>").expect("valid").concurrent);
    }

    #[test]
    fn malformed_or_unknown_configurations_are_refused() {
        assert!(parse("<flow-definition><properties></flow-definition>").is_err());
        assert!(parse("not xml at all").is_err());
        assert!(parse("<matrix-project/>").unwrap_err().contains("matrix-project"));
        assert!(parse("").is_err());
    }

    #[test]
    fn a_folder_is_told_by_its_root_element() {
        let folder = "<?xml version='1.1' encoding='UTF-8'?>\n<com.cloudbees.hudson.plugins.folder.Folder plugin=\"cloudbees-folder@6.955.v81e2a_35c08d3\">\n  <description>Team A</description>\n  <properties/>\n  <folderViews class=\"com.cloudbees.hudson.plugins.folder.views.DefaultFolderViewHolder\"><views><hudson.model.AllView><owner class=\"com.cloudbees.hudson.plugins.folder.Folder\" reference=\"../../../..\"/><name>All</name></hudson.model.AllView></views></folderViews>\n  <healthMetrics/>\n</com.cloudbees.hudson.plugins.folder.Folder>";
        assert_eq!(parse_item(folder).expect("valid"), ItemDefinition::Folder(FolderDefinition { description: Some("Team A".into()) }));
        assert!(parse(folder).unwrap_err().contains("is a folder, not a job"));
        assert!(matches!(parse_item(PIPELINE).expect("valid"), ItemDefinition::Job(_)));
        assert!(parse_item("<com.cloudbees.hudson.plugins.folder.Folder><description>").is_err());
    }

    #[test]
    fn password_values_never_show() {
        let job = parse(PIPELINE).expect("valid");
        let password = job.parameters[1].default_value();
        assert_eq!(password.short_description(), "REGISTRY_PASSWORD=****");
        assert!(password.to_json().get("value").is_none());
        assert_eq!(job.parameters[1].submitted_value("<DEFAULT>").expect("default").value, "s<cret");
    }
}
