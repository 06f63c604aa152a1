//! ⑦ Queries: read-only, answered from the read store alone, returning DTOs.
//!
//! Each query names the projection whose views answer it, so that a caller
//! holding a consistency token can first wait for that projection.
//!
//! The order queries open the sealed personal data their views hold with
//! the customer's key, read from the key store on every query (never
//! cached: a key forgotten by another process is gone here at once); once
//! the key is destroyed each field reads as [`parallax_core::ERASED`]
//! ([`shop_events::personal`]).

use std::sync::Arc;

use parallax_core::{
    ClusteringRange, DocKey, KeyStore, KeyStoreError, ReadStoreError, Tenant, View, ViewReader,
};
use serde::{de::DeserializeOwned, Serialize};
use shop_events::Contact;
use uuid::Uuid;

use crate::projections::{CartProjection, CatalogProjection, OrderProjection, SalesProjection};
use crate::views::{
    CartView, OrderView, ProductView, SalesView, ALL, CART, CATALOG, CUSTOMER_ORDERS, ORDER, SALES,
};

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The read store failed.
    #[error(transparent)]
    Store(#[from] ReadStoreError),
    /// The key store failed (personal data cannot be opened, nor shown
    /// as erased: the key may still exist).
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
    /// A stored document does not match its view's shape.
    #[error("view {view} holds a document that does not decode: {reason}")]
    Corrupt {
        /// The view.
        view: &'static str,
        /// What serde said.
        reason: String,
    },
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listing<T> {
    /// The items, in the listing's order.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// An order as a query answers it: the view, with its personal data opened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderDetails {
    /// The order view, without its sealed `personal` data.
    #[serde(flatten)]
    pub order: OrderView,
    /// The buyer's name, e-mail and shipping address, opened with the
    /// customer's key; every field [`parallax_core::ERASED`] once the
    /// customer was forgotten. Absent when the checkout gave none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
}

/// The shop's queries: read-only, over the read store's reader part, and
/// the key store for opening personal data.
#[derive(Clone)]
pub struct ShopQueries {
    store: Arc<dyn ViewReader>,
    keys: Arc<dyn KeyStore>,
    /// Whose documents they read: every partition named is this tenant's,
    /// and every customer whose key opens personal data.
    tenant: Tenant,
}

/// Which projection answers each query, for consistency waits.
pub mod answered_by {
    use super::*;
    /// Products and the catalog.
    pub const PRODUCTS: &str = CatalogProjection::NAME;
    /// Carts.
    pub const CARTS: &str = CartProjection::NAME;
    /// Orders, by id and by customer.
    pub const ORDERS: &str = OrderProjection::NAME;
    /// The sales report.
    pub const SALES: &str = SalesProjection::NAME;
}

/// Page size when a listing is asked for without a limit, and its maximum.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest page a listing returns.
pub const MAX_LIMIT: usize = 500;

impl ShopQueries {
    /// Queries over `store`, opening personal data with the keys in `keys`.
    pub fn new(store: Arc<dyn ViewReader>, keys: Arc<dyn KeyStore>) -> Self {
        Self { store, keys, tenant: Tenant::DEFAULT }
    }

    /// The same queries over `tenant`'s documents: each reads partitions
    /// of that tenant's alone (the tenant is a component of the partition
    /// key, not a filter on what was read).
    pub fn in_tenant(&self, tenant: Tenant) -> Self {
        Self { store: self.store.clone(), keys: self.keys.clone(), tenant }
    }

    /// The catalog, by SKU.
    pub async fn products(
        &self,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Listing<ProductView>, QueryError> {
        self.list(&CATALOG, ALL, limit, cursor).await
    }

    /// One product.
    pub async fn product(&self, sku: &str) -> Result<Option<ProductView>, QueryError> {
        self.one(&CATALOG, &DocKey::new(ALL, sku)).await
    }

    /// One cart.
    pub async fn cart(&self, cart_id: &str) -> Result<Option<CartView>, QueryError> {
        self.one(&CART, &DocKey::partition(cart_id)).await
    }

    /// A customer's orders, newest first.
    pub async fn customer_orders(
        &self,
        customer_id: &str,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Listing<OrderDetails>, QueryError> {
        let Listing { items, next_cursor } = self.list(&CUSTOMER_ORDERS, customer_id, limit, cursor).await?;
        // One customer: one key, read once for the page.
        let sealed = items.iter().any(|order| order.personal.is_some());
        let key = if sealed { self.keys.key(&self.tenant.scope(customer_id)).await? } else { None };
        let items = items.into_iter().map(|order| open(order, key.as_ref())).collect();
        Ok(Listing { items, next_cursor })
    }

    /// One order.
    pub async fn order(&self, order_id: Uuid) -> Result<Option<OrderDetails>, QueryError> {
        let Some(order) = self.one(&ORDER, &DocKey::partition(order_id.to_string())).await? else {
            return Ok(None);
        };
        let key = match order.personal {
            Some(_) => self.keys.key(&self.tenant.scope(&order.customer_id)).await?,
            None => None,
        };
        Ok(Some(open(order, key.as_ref())))
    }

    /// Units and revenue per product, by SKU.
    pub async fn sales(
        &self,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Listing<SalesView>, QueryError> {
        self.list(&SALES, ALL, limit, cursor).await
    }

    async fn one<T: DeserializeOwned>(&self, view: &View<T>, key: &DocKey) -> Result<Option<T>, QueryError> {
        let view = view.name();
        // Straight from the stored text into the DTO: no JSON value between.
        self.store
            .get_json(view, &self.tenant.scope_key(key))
            .await?
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| QueryError::Corrupt { view, reason: e.to_string() })
    }

    async fn list<T: DeserializeOwned>(
        &self,
        view: &View<T>,
        partition: &str,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Listing<T>, QueryError> {
        let view = view.name();
        let range = ClusteringRange { after: cursor, ..ClusteringRange::default() };
        let partition = self.tenant.scope(partition);
        let page = self.store.scan_json(view, &partition, &range, limit.clamp(1, MAX_LIMIT)).await?;
        let items = page
            .documents
            .iter()
            .map(|doc| serde_json::from_str(&doc.body))
            .collect::<Result<_, _>>()
            .map_err(|e| QueryError::Corrupt { view, reason: e.to_string() })?;
        Ok(Listing { items, next_cursor: page.next_cursor })
    }
}

/// `order` with its sealed personal data opened by `key` (the customer's, if
/// it still exists).
fn open(mut order: OrderView, key: Option<&parallax_core::DataKey>) -> OrderDetails {
    let contact = order.personal.take().map(|sealed| sealed.open(key, &order.customer_id));
    OrderDetails { order, contact }
}
