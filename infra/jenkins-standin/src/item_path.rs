//! Where an item (a job or a folder) lives: its name and the folders above it, and what Jenkins
//! derives from them: the full name (`team-a/app`), the full display name (`team-a » app`), the
//! URL (`job/team-a/job/app/`). Also Jenkins' check of a new item's name.
//!
//! Jenkins keeps the items of the root and of every folder in a map ordered by
//! `String.CASE_INSENSITIVE_ORDER`: `/job/APP/` finds `app`, and `App` cannot be created beside
//! `app`. [`ItemPath::key`] is that lookup key.

use std::fmt;

/// Characters kept as they are in an item name used as a URL path segment.
const NAME_IN_URL: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'!')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// The names from the root down to an item, outermost folder first; empty for the root itself
/// (the item group that holds the top-level items).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ItemPath(Vec<String>);

/// The key of an item in the stand-in's map: its path with every name case-folded, as Jenkins
/// looks names up. A folder's key is a prefix of the keys of everything inside it.
pub type ItemKey = Vec<String>;

impl ItemPath {
    /// The root item group.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The item called `name` in this folder (or at the root).
    pub fn child(&self, name: &str) -> Self {
        let mut names = self.0.clone();
        names.push(name.to_owned());
        Self(names)
    }

    /// The folder holding this item (the root for a top-level item).
    pub fn parent(&self) -> Self {
        Self(self.folder_names().to_vec())
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// The names of the folders above the item (the names of [`ItemPath::parent`]).
    pub fn folder_names(&self) -> &[String] {
        &self.0[..self.0.len().saturating_sub(1)]
    }

    /// The item's own name (empty for the root).
    pub fn name(&self) -> &str {
        self.0.last().map(String::as_str).unwrap_or_default()
    }

    /// `team-a/app`: Jenkins' `getFullName()` (`JOB_NAME` of a build).
    pub fn full_name(&self) -> String {
        self.0.join("/")
    }

    /// `team-a » app`: Jenkins' `getFullDisplayName()` (the stand-in has no display names).
    pub fn full_display_name(&self) -> String {
        self.0.join(" » ")
    }

    /// `job/team-a/job/app/` (empty for the root), each name percent-encoded.
    pub fn relative_url(&self) -> String {
        self.0.iter().map(|name| format!("job/{}/", percent_encoding::utf8_percent_encode(name, NAME_IN_URL))).collect()
    }

    /// The absolute URL below `base` (which ends with `/`).
    pub fn url(&self, base: &str) -> String {
        format!("{base}{}", self.relative_url())
    }

    pub fn key(&self) -> ItemKey {
        self.0.iter().map(|name| fold_case(name)).collect()
    }

    /// Whether `other` is this item or lies somewhere inside it.
    pub fn contains(&self, other: &ItemPath) -> bool {
        other.0.len() >= self.0.len() && self.0.iter().zip(&other.0).all(|(mine, theirs)| fold_case(mine) == fold_case(theirs))
    }
}

impl fmt::Display for ItemPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full_name())
    }
}

/// A name as Jenkins' case-insensitive item maps compare it.
pub fn fold_case(name: &str) -> String {
    name.to_lowercase()
}

/// Jenkins' `checkGoodName` for the name of a new item.
pub fn check_good_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("No name is specified".to_owned());
    }
    if name.trim() == "." || name.trim() == ".." {
        return Err(format!("“{}” is not an allowed name", name.trim()));
    }
    for c in name.chars() {
        if c.is_control() {
            return Err(format!("No control code is allowed: {}", name.escape_debug()));
        }
        if "?*/\\%!@#$^&|<>[]:;".contains(c) {
            return Err(format!("‘{c}’ is an unsafe character"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_item_has_jenkins_full_name_display_name_and_url() {
        let app = ItemPath::root().child("team a").child("app");
        assert_eq!(app.full_name(), "team a/app");
        assert_eq!(app.full_display_name(), "team a » app");
        assert_eq!(app.url("http://jenkins.test/"), "http://jenkins.test/job/team%20a/job/app/");
        assert_eq!(app.name(), "app");
        assert_eq!(app.parent(), ItemPath::root().child("team a"));
        assert!(ItemPath::root().is_root() && ItemPath::root().relative_url().is_empty());
    }

    #[test]
    fn names_are_looked_up_without_case() {
        let folder = ItemPath::root().child("Team-A");
        assert_eq!(folder.key(), ItemPath::root().child("team-a").key());
        assert!(folder.contains(&ItemPath::root().child("TEAM-A").child("app")));
        assert!(!folder.contains(&ItemPath::root().child("team-b").child("app")));
        assert!(!folder.child("app").contains(&folder));
    }

    #[test]
    fn item_names_are_checked_like_jenkins() {
        assert!(check_good_name("my-app_1.0").is_ok());
        assert_eq!(check_good_name("a/b").unwrap_err(), "‘/’ is an unsafe character");
        assert_eq!(check_good_name("").unwrap_err(), "No name is specified");
        assert!(check_good_name("..").is_err());
        assert!(check_good_name("tab\there").is_err());
    }
}
