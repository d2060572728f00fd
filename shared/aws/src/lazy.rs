//! SDK clients built on first use.

use std::sync::{Arc, OnceLock};

use aws_config::SdkConfig;

/// An SDK client built the first time it is used. Building one parses its service's
/// endpoint rules and sets up its TLS connector; a function pays that at its cold start
/// only for the services it calls, and only once it calls them (the api reads S3 only
/// for states and plans). Clones share the one client.
pub struct LazyClient<C>(Arc<Inner<C>>);

struct Inner<C> {
    client: OnceLock<C>,
    /// `None` for a client given ready-made.
    recipe: Option<Recipe<C>>,
}

struct Recipe<C> {
    sdk: SdkConfig,
    build: fn(&SdkConfig) -> C,
}

impl<C> LazyClient<C> {
    pub fn new(sdk: &SdkConfig, build: fn(&SdkConfig) -> C) -> Self {
        Self(Arc::new(Inner {
            client: OnceLock::new(),
            recipe: Some(Recipe {
                sdk: sdk.clone(),
                build,
            }),
        }))
    }

    pub fn get(&self) -> &C {
        let inner = &self.0;
        inner.client.get_or_init(|| {
            let recipe = inner
                .recipe
                .as_ref()
                .expect("a client given ready-made is never built");
            (recipe.build)(&recipe.sdk)
        })
    }
}

impl<C: std::fmt::Debug> std::fmt::Debug for LazyClient<C> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.client.get() {
            Some(client) => client.fmt(formatter),
            None => formatter.write_str("LazyClient(not built yet)"),
        }
    }
}

impl<C> Clone for LazyClient<C> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<C> From<C> for LazyClient<C> {
    fn from(client: C) -> Self {
        Self(Arc::new(Inner {
            client: OnceLock::from(client),
            recipe: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static BUILT: AtomicUsize = AtomicUsize::new(0);

    fn count(_: &SdkConfig) -> usize {
        BUILT.fetch_add(1, Ordering::SeqCst) + 1
    }

    #[test]
    fn a_client_is_built_once_on_first_use_and_shared_by_clones() {
        let lazy = LazyClient::new(&SdkConfig::builder().build(), count);
        let clone = lazy.clone();
        assert_eq!(BUILT.load(Ordering::SeqCst), 0);
        assert_eq!(*clone.get(), 1);
        assert_eq!(*lazy.get(), 1);
        assert_eq!(BUILT.load(Ordering::SeqCst), 1);
        assert_eq!(*LazyClient::from(7).get(), 7);
    }
}
