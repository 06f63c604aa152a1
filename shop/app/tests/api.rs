//! The HTTP black-box suite on the embedded shop: every case of
//! `common/suite.rs`, each on a fresh shop in this process.

mod common;

use common::{spawn_app, suite};

/// One test per suite case, on a fresh embedded shop.
macro_rules! embedded {
    ($case:ident) => {
        #[tokio::test]
        async fn $case() {
            let app = spawn_app().await;
            suite::$case(&app).await;
        }
    };
}

suite::for_each_case!(embedded);
