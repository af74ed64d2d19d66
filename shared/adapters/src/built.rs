//! A client built at once, or when first used (issue 7, cold start). Each function builds at start
//! the clients its requests use, and leaves the others to the rare request that needs one: the
//! first client of each AWS SDK crate parses that crate's partition table, and every reqwest
//! client sets up its connector, about 0.1 ms each on a cold start.

use std::ops::Deref;
use std::sync::LazyLock;

pub struct Built<C>(LazyLock<C, Box<dyn FnOnce() -> C + Send>>);

impl<C> Built<C> {
    /// A client that `build` makes the first time it is used.
    pub fn on_first_use(build: impl FnOnce() -> C + Send + 'static) -> Self {
        Self(LazyLock::new(Box::new(build)))
    }
}

impl<C: Send + 'static> From<C> for Built<C> {
    /// A client built already.
    fn from(client: C) -> Self {
        let built = Self::on_first_use(move || client);
        LazyLock::force(&built.0);
        built
    }
}

impl<C> Deref for Built<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_client_on_first_use_is_built_once_when_first_used() {
        let builds = Arc::new(AtomicUsize::new(0));
        let counted = builds.clone();
        let client = Built::on_first_use(move || counted.fetch_add(1, Ordering::SeqCst) + 41);
        assert_eq!(builds.load(Ordering::SeqCst), 0, "not built before it is used");
        assert_eq!((*client, *client), (41, 41));
        assert_eq!(builds.load(Ordering::SeqCst), 1, "built once");
    }
}
