//! ① The write side's service: one command handler per aggregate, and the
//! lookups a decision needs (a product's name and price) done before the
//! decision, so aggregates stay pure.
//!
//! Personal data is sealed here, before the decision: a checkout's name,
//! e-mail and address are sealed under the customer's key (created on the
//! first checkout that gives them) and the cart only ever sees ciphertext,
//! which its events, the topic and the views carry ([`shop_events::personal`]).

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use parallax_core::{EventStore, KeyStore};
use parallax_runtime::{
    CommandContext, CommandError, CommandHandler, Executed, Hydrated, LoadError, Lookups,
};
use shop_domain::{
    Cart, CartCommand, CartError, CartId, CustomerId, DomainError, Order, OrderCommand, Product,
    ProductCommand, ProductInfo, Quantity, Refusal, SagaCommand, Sku,
};
use shop_events::{Contact, PersonalData};
use uuid::Uuid;

/// Why a shop command failed.
#[derive(Debug, thiserror::Error)]
pub enum ShopCommandError {
    /// The aggregate refused; `kind` says how, `code` exactly what.
    #[error("{message}")]
    Refused {
        /// What kind of refusal.
        kind: Refusal,
        /// The refusal's stable code ([`DomainError::code`]).
        code: &'static str,
        /// The aggregate's words.
        message: String,
    },
    /// Concurrent changes kept winning.
    #[error("{0}")]
    Conflict(String),
    /// The idempotency key was used for another request.
    #[error("{0}")]
    IdempotencyMismatch(String),
    /// The store failed, or stored data is corrupt.
    #[error("command failed")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ShopCommandError {
    /// Names the aggregate in a bare "not found" refusal.
    fn naming(self, what: &str, id: &str) -> Self {
        match self {
            Self::Refused { kind: Refusal::NotFound, code, message } if !message.contains(id) => {
                Self::Refused { kind: Refusal::NotFound, code, message: format!("{what} {id} not found") }
            }
            other => other,
        }
    }

    fn from_command<E: DomainError>(error: CommandError<E>) -> Self {
        match error {
            CommandError::Domain(e) => {
                Self::Refused { kind: e.kind(), code: e.code(), message: e.to_string() }
            }
            e @ CommandError::Conflict { .. } => Self::Conflict(e.to_string()),
            e @ CommandError::IdempotencyMismatch { .. } => Self::IdempotencyMismatch(e.to_string()),
            e => Self::Internal(Box::new(e)),
        }
    }
}

/// The shop's command side.
pub struct ShopCommands {
    products: CommandHandler<Product>,
    carts: CommandHandler<Cart>,
    orders: CommandHandler<Order>,
    keys: Arc<dyn KeyStore>,
}

impl ShopCommands {
    /// Handlers over `store`, sealing personal data with keys from `keys`.
    pub fn new(store: Arc<dyn EventStore>, keys: Arc<dyn KeyStore>) -> Self {
        Self {
            products: CommandHandler::new(store.clone()),
            carts: CommandHandler::new(store.clone()),
            orders: CommandHandler::new(store),
            keys,
        }
    }

    /// Destroys the customer's key: every piece of their personal data in
    /// every event and view reads as erased from now on. `true` if there
    /// was a key. A customer's key is its tenant's (the same customer id in
    /// two tenants is two customers, with two keys).
    pub async fn forget_customer(
        &self,
        customer_id: &CustomerId,
        tenant: &parallax_core::Tenant,
    ) -> Result<bool, ShopCommandError> {
        let subject = tenant.scope(customer_id.as_str());
        self.keys.forget(&subject).await.map_err(|e| ShopCommandError::Internal(Box::new(e)))
    }

    /// A product command.
    pub async fn product(
        &self,
        sku: &str,
        command: ProductCommand,
        context: &CommandContext,
    ) -> Result<Executed, ShopCommandError> {
        self.products
            .execute(sku, &command, context)
            .await
            .map_err(|e| ShopCommandError::from_command(e).naming("product", sku))
    }

    /// Puts units of a product in a cart, priced as the product is now.
    pub async fn add_item(
        &self,
        cart_id: &CartId,
        sku: &Sku,
        quantity: Quantity,
        context: &CommandContext,
    ) -> Result<Executed, ShopCommandError> {
        self.cart(cart_id, context, |_, lookups| async move {
            let product = self.product_info(sku.as_str(), &lookups).await?;
            Ok(CartCommand::AddItem { cart_id: cart_id.clone(), sku: sku.clone(), quantity, product })
        })
        .await
    }

    /// Takes a product out of a cart.
    pub async fn remove_item(
        &self,
        cart_id: &CartId,
        sku: &Sku,
        context: &CommandContext,
    ) -> Result<Executed, ShopCommandError> {
        let command = CartCommand::RemoveItem { cart_id: cart_id.clone(), sku: sku.clone() };
        self.cart(cart_id, context, |_, _| std::future::ready(Ok(&command))).await
    }

    /// Turns a cart into order `order_id`, priced as the products are now:
    /// priced again on every attempt, since a retried checkout may find
    /// other lines in the cart, or other prices. `contact` is sealed under
    /// the customer's key (created if they have none) before the decision.
    pub async fn check_out(
        &self,
        cart_id: &CartId,
        customer_id: &CustomerId,
        contact: Option<&Contact>,
        order_id: Uuid,
        context: &CommandContext,
    ) -> Result<Executed, ShopCommandError> {
        let personal = match contact {
            Some(contact) => {
                let key = self
                    .keys
                    .key_for(&context.tenant.scope(customer_id.as_str()))
                    .await
                    .map_err(|e| ShopCommandError::Internal(Box::new(e)))?;
                Some(PersonalData::seal(&key, customer_id.as_str(), contact))
            }
            None => None,
        };
        let personal = &personal;
        self.cart(cart_id, context, |cart, lookups| async move {
            let mut prices = BTreeMap::new();
            for sku in cart.state.skus() {
                if let Some(info) = self.product_info(sku, &lookups).await? {
                    prices.insert(sku.to_owned(), info);
                }
            }
            Ok(CartCommand::CheckOut {
                cart_id: cart_id.clone(),
                order_id,
                customer_id: customer_id.clone(),
                prices,
                personal: personal.clone(),
            })
        })
        .await
    }

    /// An order command.
    pub async fn order(
        &self,
        order_id: Uuid,
        command: OrderCommand,
        context: &CommandContext,
    ) -> Result<Executed, ShopCommandError> {
        let id = order_id.to_string();
        self.orders
            .execute(&id, &command, context)
            .await
            .map_err(|e| ShopCommandError::from_command(e).naming("order", &id))
    }

    /// A command the checkout saga decided to send.
    pub async fn dispatch(
        &self,
        command: SagaCommand,
        context: &CommandContext,
    ) -> Result<Executed, ShopCommandError> {
        match command {
            SagaCommand::Product { sku, command } => self.product(&sku, command, context).await,
            SagaCommand::Order { order_id, command } => self.order(order_id, command, context).await,
        }
    }

    /// A cart command built by `build` on each attempt (see
    /// [`CommandHandler::execute_with`]).
    async fn cart<C, F, Fut>(
        &self,
        cart_id: &CartId,
        context: &CommandContext,
        build: F,
    ) -> Result<Executed, ShopCommandError>
    where
        C: Borrow<CartCommand>,
        F: Fn(Arc<Hydrated<Cart>>, Lookups) -> Fut,
        Fut: Future<Output = Result<C, CommandError<CartError>>>,
    {
        self.carts
            .execute_with(cart_id.as_str(), context, build)
            .await
            .map_err(ShopCommandError::from_command)
    }

    /// A product's name and price for a cart decision, looked up in `lookups`.
    async fn product_info(&self, sku: &str, lookups: &Lookups) -> Result<Option<ProductInfo>, LoadError> {
        let product = self.products.lookup(sku, lookups).await?;
        Ok(product.state.is_registered().then(|| ProductInfo {
            name: product.state.name().to_owned(),
            unit_price_cents: product.state.price_cents(),
        }))
    }
}
