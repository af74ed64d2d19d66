//! Who may do what, when [`crate::StandInConfig::authorization`] is set: the matrix-auth plugin's
//! "Project-based Matrix Authorization Strategy" with folder grants (its
//! `com.cloudbees.hudson.plugins.folder.properties.AuthorizationMatrixProperty`, inheriting from
//! the parent, the default). Without it every signed-in user may do everything (Jenkins'
//! "Logged-in users can do anything").
//!
//! How matrix-auth decides (`ProjectMatrixAuthorizationStrategy`, `InheritParentStrategy`):
//! - The root ACL holds the global grants. A job has the ACL of the folder holding it (or the
//!   root's). A folder's ACL grants what its parent's ACL grants (the root's for a top-level
//!   folder) plus what is granted on the folder itself; so a folder grant also holds on the folder
//!   and on everything inside it, at any depth.
//! - Except Job/Read and Job/Discover below a top-level folder: those come from the parent only
//!   (matrix-auth's `checkParentPermissions`, on by default), so granting Job/Read on
//!   `team-a/sub` alone gives nothing; grant it on `team-a`.
//! - A grant implies what it is `impliedBy` of: Overall/Administer implies everything, Job/Read
//!   implies Job/Discover. Nothing else: Job/Build does not imply Job/Read.
//! - A grant to `authenticated` holds for every signed-in user.
//!
//! The grants are written `<sid>[@<folder>]:<permission>[,<permission>…]`, grants separated by
//! `;` or new lines: `admin:Overall/Administer; alice:Overall/Read;
//! alice@team-a:Job/Read,Job/Create,Job/Build`. `<folder>` is a full name (`team-a/sub`). A
//! permission is written as matrix-auth shows it (`Job/Build`) or by its id
//! (`hudson.model.Item.Build`). Overall permissions are global only.

use std::fmt;
use std::str::FromStr;

use crate::item_path::fold_case;

/// The permissions of Jenkins core that the stand-in's routes check, with the generic ones they
/// are implied by (`hudson.security.Permission`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    OverallAdminister,
    OverallRead,
    JobCreate,
    JobDelete,
    JobConfigure,
    JobRead,
    JobDiscover,
    JobBuild,
    JobCancel,
    JobWorkspace,
    GenericRead,
    GenericWrite,
    GenericCreate,
    GenericUpdate,
    GenericDelete,
    GenericConfigure,
}

impl Permission {
    /// What a grant may name (the generic permissions are not granted in matrix-auth).
    pub const GRANTABLE: [Permission; 10] = [
        Permission::OverallAdminister,
        Permission::OverallRead,
        Permission::JobCreate,
        Permission::JobDelete,
        Permission::JobConfigure,
        Permission::JobRead,
        Permission::JobDiscover,
        Permission::JobBuild,
        Permission::JobCancel,
        Permission::JobWorkspace,
    ];

    /// The id, as in `X-Required-Permission`: `hudson.model.Item.Build`.
    pub fn id(self) -> &'static str {
        match self {
            Permission::OverallAdminister => "hudson.model.Hudson.Administer",
            Permission::OverallRead => "hudson.model.Hudson.Read",
            Permission::JobCreate => "hudson.model.Item.Create",
            Permission::JobDelete => "hudson.model.Item.Delete",
            Permission::JobConfigure => "hudson.model.Item.Configure",
            Permission::JobRead => "hudson.model.Item.Read",
            Permission::JobDiscover => "hudson.model.Item.Discover",
            Permission::JobBuild => "hudson.model.Item.Build",
            Permission::JobCancel => "hudson.model.Item.Cancel",
            Permission::JobWorkspace => "hudson.model.Item.Workspace",
            Permission::GenericRead => "hudson.security.Permission.GenericRead",
            Permission::GenericWrite => "hudson.security.Permission.GenericWrite",
            Permission::GenericCreate => "hudson.security.Permission.GenericCreate",
            Permission::GenericUpdate => "hudson.security.Permission.GenericUpdate",
            Permission::GenericDelete => "hudson.security.Permission.GenericDelete",
            Permission::GenericConfigure => "hudson.security.Permission.GenericConfigure",
        }
    }

    /// `Job/Build`: the group's title and the name, as in "alice is missing the Job/Build
    /// permission".
    pub fn title(self) -> String {
        let (class, name) = self.id().rsplit_once('.').unwrap_or_default();
        let group = match class {
            "hudson.model.Hudson" => "Overall",
            "hudson.model.Item" => "Job",
            _ => "Permission",
        };
        format!("{group}/{name}")
    }

    /// The permission that implies this one (`Permission.impliedBy` in Jenkins).
    pub fn implied_by(self) -> Option<Permission> {
        use Permission::*;
        match self {
            OverallAdminister => None,
            OverallRead | JobRead | JobWorkspace => Some(GenericRead),
            JobDiscover => Some(JobRead),
            JobCreate => Some(GenericCreate),
            JobDelete => Some(GenericDelete),
            JobConfigure => Some(GenericConfigure),
            JobBuild | JobCancel => Some(GenericUpdate),
            GenericRead | GenericWrite => Some(OverallAdminister),
            GenericCreate | GenericUpdate | GenericDelete => Some(GenericWrite),
            GenericConfigure => Some(GenericUpdate),
        }
    }

    /// The permissions implying this one, nearest first (`X-Permission-Implied-By` headers).
    pub fn implied_by_chain(self) -> Vec<Permission> {
        std::iter::successors(self.implied_by(), |p| p.implied_by()).collect()
    }

    /// Overall permissions are granted globally only (matrix-auth shows them for the root).
    pub fn is_global(self) -> bool {
        matches!(self, Permission::OverallAdminister | Permission::OverallRead)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.title())
    }
}

impl FromStr for Permission {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        Permission::GRANTABLE.into_iter().find(|p| p.title() == raw || p.id() == raw).ok_or_else(|| {
            let known: Vec<String> = Permission::GRANTABLE.iter().map(|p| p.title()).collect();
            format!("unknown permission '{raw}': the stand-in knows {}", known.join(", "))
        })
    }
}

/// The sid that every signed-in user is part of (matrix-auth's "Authenticated Users").
pub const AUTHENTICATED: &str = "authenticated";

/// One row of the matrix: `sid` (a user, or [`AUTHENTICATED`]) has these permissions, globally
/// or on a folder (by full name) and everything in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub sid: String,
    pub folder: Option<String>,
    pub permissions: Vec<Permission>,
}

impl Grant {
    /// Whether this grant, on exactly `scope` (folder names; empty: global), gives `permission`
    /// (itself or something implying it) to `user`.
    fn gives(&self, user: &str, scope: &[String], permission: Permission) -> bool {
        let at_scope = match &self.folder {
            None => scope.is_empty(),
            Some(folder) => {
                let names: Vec<&str> = folder.split('/').collect();
                names.len() == scope.len() && names.iter().zip(scope).all(|(mine, theirs)| fold_case(mine) == fold_case(theirs))
            }
        };
        let implying = |granted: &Permission| *granted == permission || permission.implied_by_chain().contains(granted);
        at_scope && (self.sid == user || self.sid == AUTHENTICATED) && self.permissions.iter().any(implying)
    }
}

/// The grants of the matrix. Build it with [`Authorization::global`] and
/// [`Authorization::on_folder`], or parse the text form (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Authorization {
    grants: Vec<Grant>,
}

impl Authorization {
    pub fn new() -> Self {
        Self::default()
    }

    /// Grants `permissions` to `sid` everywhere.
    pub fn global(mut self, sid: &str, permissions: impl IntoIterator<Item = Permission>) -> Self {
        self.grants.push(Grant { sid: sid.to_owned(), folder: None, permissions: permissions.into_iter().collect() });
        self
    }

    /// Grants `permissions` to `sid` on the folder of this full name and everything inside it.
    /// Overall permissions cannot be granted on a folder (see [`Authorization::from_str`]).
    pub fn on_folder(mut self, folder: &str, sid: &str, permissions: impl IntoIterator<Item = Permission>) -> Self {
        self.grants.push(Grant { sid: sid.to_owned(), folder: Some(folder.to_owned()), permissions: permissions.into_iter().collect() });
        self
    }

    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// Whether `user` has `permission` in the ACL of `owner`: the names of the folder whose ACL
    /// applies (a job's folder, a folder itself), empty for the root ACL.
    pub fn allows(&self, user: &str, owner: &[String], permission: Permission) -> bool {
        let granted_here = |scope: &[String]| self.grants.iter().any(|grant| grant.gives(user, scope, permission));
        let Some((_, parent)) = owner.split_last() else { return granted_here(&[]) };
        let inherited = self.allows(user, parent, permission);
        let from_parent_only = !parent.is_empty() && matches!(permission, Permission::JobRead | Permission::JobDiscover);
        inherited || (!from_parent_only && granted_here(owner))
    }

    fn validate(&self) -> Result<(), String> {
        for grant in &self.grants {
            if grant.sid.is_empty() || grant.sid.contains([':', ';', '@', ',', '\n']) || grant.sid.trim() != grant.sid {
                return Err(format!("'{}' cannot be the user of a grant", grant.sid));
            }
            if grant.permissions.is_empty() {
                return Err(format!("the grant to {} names no permission", grant.sid));
            }
            if let Some(folder) = &grant.folder {
                for name in folder.split('/') {
                    crate::item_path::check_good_name(name)
                        .map_err(|why| format!("folder '{folder}' of a grant to {}: {why}", grant.sid))?;
                }
                if let Some(global) = grant.permissions.iter().find(|p| p.is_global()) {
                    return Err(format!("{global} is granted globally only, not on folder '{folder}' (write {}:{global})", grant.sid));
                }
            }
        }
        Ok(())
    }
}

impl FromStr for Authorization {
    type Err = String;

    /// `admin:Overall/Administer; alice:Overall/Read; alice@team-a:Job/Read,Job/Build`.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut authorization = Authorization::new();
        for entry in text.split([';', '\n']).map(str::trim).filter(|entry| !entry.is_empty()) {
            let Some((who, permissions)) = entry.split_once(':') else {
                return Err(format!("a grant is <user>[@<folder>]:<permission>[,<permission>…], got '{entry}'"));
            };
            let permissions = permissions.split(',').map(str::parse).collect::<Result<Vec<Permission>, String>>()?;
            let (sid, folder) = match who.split_once('@') {
                Some((sid, folder)) => (sid.trim(), Some(folder.trim().trim_matches('/'))),
                None => (who.trim(), None),
            };
            authorization = match folder {
                Some(folder) => authorization.on_folder(folder, sid, permissions),
                None => authorization.global(sid, permissions),
            };
        }
        authorization.validate()?;
        Ok(authorization)
    }
}

impl fmt::Display for Authorization {
    /// The text form, which [`Authorization::from_str`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, grant) in self.grants.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            f.write_str(&grant.sid)?;
            if let Some(folder) = &grant.folder {
                write!(f, "@{folder}")?;
            }
            let permissions: Vec<String> = grant.permissions.iter().map(|p| p.title()).collect();
            write!(f, ":{}", permissions.join(","))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    fn names(full_name: &str) -> Vec<String> {
        full_name.split('/').filter(|n| !n.is_empty()).map(str::to_owned).collect()
    }

    #[test]
    fn the_text_form_reads_titles_and_ids_and_reads_back() {
        let matrix: Authorization =
            "admin:Overall/Administer;\n alice : Overall/Read ; alice@team-a/sub:Job/Read, hudson.model.Item.Build".parse().expect("valid");
        assert_eq!(
            matrix,
            Authorization::new().global("admin", [OverallAdminister]).global("alice", [OverallRead]).on_folder(
                "team-a/sub",
                "alice",
                [JobRead, JobBuild]
            )
        );
        assert_eq!(matrix.to_string(), "admin:Overall/Administer; alice:Overall/Read; alice@team-a/sub:Job/Read,Job/Build");
        assert_eq!(matrix.to_string().parse::<Authorization>().expect("round trip"), matrix);
    }

    #[test]
    fn malformed_grants_are_refused_with_a_reason() {
        assert!("alice Overall/Read".parse::<Authorization>().unwrap_err().contains("<user>[@<folder>]"));
        assert!("alice:Job/Fly".parse::<Authorization>().unwrap_err().contains("Job/Fly"));
        assert!("alice@team-a:Overall/Read".parse::<Authorization>().unwrap_err().contains("globally only"));
        assert!("alice@a?b:Job/Read".parse::<Authorization>().unwrap_err().contains("unsafe character"));
        assert!(":Job/Read".parse::<Authorization>().is_err());
        assert_eq!("".parse::<Authorization>().expect("no grants"), Authorization::new());
    }

    #[test]
    fn messages_and_headers_name_permissions_as_jenkins() {
        assert_eq!(JobCreate.title(), "Job/Create");
        assert_eq!(OverallRead.title(), "Overall/Read");
        assert_eq!(JobConfigure.implied_by_chain(), [GenericConfigure, GenericUpdate, GenericWrite, OverallAdminister]);
        assert_eq!(OverallRead.implied_by_chain(), [GenericRead, OverallAdminister]);
        assert!(OverallAdminister.implied_by_chain().is_empty());
    }

    #[test]
    fn folder_grants_hold_inside_the_folder_only() {
        let matrix: Authorization =
            "alice:Overall/Read; alice@team-a:Job/Read,Job/Create,Job/Build; authenticated@shared:Job/Read".parse().expect("valid");
        assert!(matrix.allows("alice", &[], OverallRead));
        assert!(!matrix.allows("alice", &[], JobCreate), "not at the root");
        assert!(matrix.allows("alice", &names("team-a"), JobCreate));
        assert!(matrix.allows("alice", &names("team-a/sub/deeper"), JobBuild), "inherited at any depth");
        assert!(!matrix.allows("alice", &names("team-b"), JobRead));
        assert!(!matrix.allows("alice", &names("team-a"), JobCancel), "Build does not imply Cancel");
        assert!(matrix.allows("alice", &names("TEAM-A"), JobDiscover), "Read implies Discover; names without case");
        assert!(matrix.allows("bob", &names("shared"), JobRead) && !matrix.allows("bob", &[], OverallRead));
    }

    #[test]
    fn administer_implies_everything_everywhere() {
        let matrix = Authorization::new().global("admin", [OverallAdminister]);
        for permission in Permission::GRANTABLE {
            assert!(matrix.allows("admin", &names("any/folder"), permission), "{permission}");
            assert!(!matrix.allows("alice", &names("any/folder"), permission), "{permission}");
        }
    }

    #[test]
    fn read_below_a_top_level_folder_comes_from_the_parent_only() {
        let matrix = Authorization::new().on_folder("team-a/sub", "alice", [JobRead, JobBuild]);
        assert!(!matrix.allows("alice", &names("team-a/sub"), JobRead), "matrix-auth's checkParentPermissions");
        assert!(matrix.allows("alice", &names("team-a/sub"), JobBuild));
        let with_parent = matrix.on_folder("team-a", "alice", [JobRead]);
        assert!(with_parent.allows("alice", &names("team-a/sub"), JobRead));
    }
}
