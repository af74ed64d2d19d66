//! The Jenkins folder of `make run` and the tests, set up as a deployer sets up a real Jenkins
//! (infra/jenkins/README.md): the administrator creates the folder, and the shuttle's own user
//! may do only what the shuttle needs, in that folder only (matrix-auth, folder-scoped).

use jenkins_standin::{Account, Authorization, Permission, StandIn, StandInConfig};

/// `JENKINS_FOLDER` of the local runs.
pub const LOCAL_JENKINS_FOLDER: &str = "build-shuttle";
/// `JENKINS_USER` of the local runs: not the stand-in's administrator.
pub const SHUTTLE_USER: &str = "build-shuttle";
/// Its API token (`JENKINS_TOKEN`); a local stand-in's, nothing else's.
pub const SHUTTLE_TOKEN: &str = "5a7e11e0b0a1d2c3e4f5061728394a5b6c";

/// What the shuttle's user is granted on its folder: the permissions infra/jenkins/README.md
/// lists. Globally it has `Overall/Read` alone.
pub const FOLDER_PERMISSIONS: [Permission; 6] = [
    Permission::JobRead,
    Permission::JobCreate,
    Permission::JobConfigure,
    Permission::JobBuild,
    Permission::JobCancel,
    Permission::JobDelete,
];

/// `config` with the shuttle's user added and a matrix in force: the stand-in's own user is the
/// administrator, the shuttle's user has `Overall/Read` and [`FOLDER_PERMISSIONS`] on `folder`.
pub fn least_privilege(config: StandInConfig, folder: &str) -> StandInConfig {
    let admin = config.user.clone();
    let mut users = config.users.clone();
    users.push(Account::new(SHUTTLE_USER, SHUTTLE_TOKEN, "build-shuttle-password"));
    let authorization = Authorization::new()
        .global(&admin, [Permission::OverallAdminister])
        .global(SHUTTLE_USER, [Permission::OverallRead])
        .on_folder(folder, SHUTTLE_USER, FOLDER_PERMISSIONS);
    StandInConfig { users, authorization: Some(authorization), ..config }
}

/// Creates `folder` (`a` or `a/b`, each level in turn) as the stand-in's administrator, through
/// Jenkins' REST API (`createItem` with a Folder `config.xml`). A level that exists is kept.
pub async fn create_folder(stand_in: &StandIn, folder: &str) -> Result<(), String> {
    let http =
        shuttle_adapters::tls::reqwest_builder().and_then(|b| b.build().map_err(|e| shuttle_core::error::ServiceError::new("http", e)));
    let http = http.map_err(|e| e.to_string())?;
    let config = stand_in.config();
    // A crumb (with its session cookie) for a Jenkins that asks for one even with an API token.
    let crumb = http
        .get(format!("{}crumbIssuer/api/json", stand_in.base_url()))
        .basic_auth(&config.user, Some(&config.api_token))
        .send()
        .await
        .map_err(|e| format!("could not ask Jenkins for a crumb: {e}"))?;
    let cookie = crumb.headers().get("set-cookie").and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).map(str::to_owned);
    let crumb: serde_json::Value = crumb.json().await.map_err(|e| format!("Jenkins' crumb is not JSON: {e}"))?;
    let mut parent = String::new();
    for name in folder.split('/').filter(|name| !name.is_empty()) {
        let encoded = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        let url = format!("{}{parent}createItem?name={encoded}", stand_in.base_url());
        let mut request = http.post(url).basic_auth(&config.user, Some(&config.api_token));
        if let (Some(field), Some(value)) = (crumb["crumbRequestField"].as_str(), crumb["crumb"].as_str()) {
            request = request.header(field, value);
        }
        if let Some(cookie) = &cookie {
            request = request.header("Cookie", cookie);
        }
        let response = request
            .header("Content-Type", "application/xml")
            .body(FOLDER_CONFIG)
            .send()
            .await
            .map_err(|e| format!("could not create the Jenkins folder {folder}: {e}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() && !text.contains("already exists") {
            return Err(format!("could not create the Jenkins folder {folder}: {status} {}", text.chars().take(200).collect::<String>()));
        }
        parent.push_str(&format!("job/{encoded}/"));
    }
    Ok(())
}

/// A folder's `config.xml`, as the CloudBees Folders plugin writes one.
const FOLDER_CONFIG: &str = r#"<?xml version='1.1' encoding='UTF-8'?>
<com.cloudbees.hudson.plugins.folder.Folder plugin="cloudbees-folder@6.955.v81e2a_35c08d3">
  <description>The build shuttle's jobs (JENKINS_FOLDER).</description>
  <properties/>
  <folderViews class="com.cloudbees.hudson.plugins.folder.views.DefaultFolderViewHolder">
    <views>
      <hudson.model.AllView>
        <owner class="com.cloudbees.hudson.plugins.folder.Folder" reference="../../../.."/>
        <name>All</name>
        <filterExecutors>false</filterExecutors>
        <filterQueue>false</filterQueue>
        <properties class="hudson.model.View$PropertyList"/>
      </hudson.model.AllView>
    </views>
    <tabBar class="hudson.views.DefaultViewsTabBar"/>
  </folderViews>
  <healthMetrics/>
  <icon class="com.cloudbees.hudson.plugins.folder.icons.StockFolderIcon"/>
</com.cloudbees.hudson.plugins.folder.Folder>
"#;
