//! The cart plan the command scenarios share: a request's sequence number
//! turned into a cart command, and the catalog the carts draw from.
//!
//! Carts are taken round-robin (`seq % carts`), so two requests in flight
//! touch the same cart only when more than `carts` are in flight: the load
//! measures throughput, not conflict retries. Each cart gets
//! `items_per_cart` items; then the slot either checks it out or leaves it,
//! and starts a new cart (`c{slot}-{generation}`; its first item loads a
//! stream that does not exist yet: a cold load). Slots are staggered, so the
//! mix of add-items, checkouts and new carts is the same at every moment,
//! and carts stay small, as real ones do. Product names are long enough that a
//! `cart.item_added` payload is about 200 bytes.
//!
//! Pure: the shop's scenarios (`bench`) and the peer written with another
//! framework (`bench/peer-cqrs-es`) send the very same commands.

use serde::{Deserialize, Serialize};

/// The SKU of product `i`.
pub fn sku(i: u64) -> String {
    format!("SKU-{i:05}")
}

/// The name of product `i`: about 110 characters.
pub fn product_name(i: u64) -> String {
    const KINDS: [&str; 6] = ["Keyboard", "Desk lamp", "Notebook", "Water bottle", "Backpack", "Headphones"];
    const COLORS: [&str; 5] = ["slate grey", "forest green", "ocean blue", "sand beige", "graphite black"];
    let kind = KINDS[(i % 6) as usize];
    let color = COLORS[(i % 5) as usize];
    let mut name = format!(
        "{kind} no. {i}, {color}, recycled materials, two-year warranty, free returns within thirty days"
    );
    while name.len() < 110 {
        name.push_str(" *");
    }
    name
}

/// The price of product `i`, cents.
pub fn price_cents(i: u64) -> i64 {
    499 + (i as i64 % 50) * 100
}

/// One cart command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartOp {
    /// Put units of a product in a cart.
    AddItem {
        /// The cart.
        cart_id: String,
        /// The product.
        sku: String,
        /// Units.
        quantity: i64,
    },
    /// Check a cart out.
    CheckOut {
        /// The cart.
        cart_id: String,
        /// Who buys.
        customer_id: String,
    },
}

impl CartOp {
    /// The cart.
    pub fn cart_id(&self) -> &str {
        match self {
            CartOp::AddItem { cart_id, .. } | CartOp::CheckOut { cart_id, .. } => cart_id,
        }
    }
}

/// What a cart slot does once its cart has its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Then {
    /// Check the cart out, then start a new one.
    Checkout,
    /// Leave it (an abandoned cart) and start a new one: add-items only.
    NewCart,
}

/// Which cart command request `seq` sends.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct CartPlan {
    /// Cart slots, taken round-robin.
    pub carts: u64,
    /// Products the items are drawn from.
    pub products: u64,
    /// Items a cart gets (at least 1).
    pub items_per_cart: u64,
    /// What follows a cart's last item.
    pub then: Then,
    /// Customers the checkouts are spread over.
    pub customers: u64,
}

impl CartPlan {
    /// The command of request `seq`.
    pub fn op(&self, seq: u64) -> CartOp {
        let slot = seq % self.carts.max(1);
        let round = seq / self.carts.max(1);
        let items = self.items_per_cart.max(1);
        let cycle = match self.then {
            Then::Checkout => items + 1,
            Then::NewCart => items,
        };
        // Slots start at different phases (0 to items-1 items in), so at any
        // moment the mix is steady — 1 in `cycle` requests opens a new cart,
        // and with checkouts 1 in `cycle` checks one out — rather than every
        // slot starting a cart at once.
        let at = round + slot % items;
        let (generation, phase) = (at / cycle, at % cycle);
        let cart_id = format!("c{slot}-{generation}");
        if phase == items {
            return CartOp::CheckOut { cart_id, customer_id: format!("u{}", slot % self.customers.max(1)) };
        }
        let product = (slot * 7 + round * 13) % self.products.max(1);
        CartOp::AddItem { cart_id, sku: sku(product), quantity: 1 + (seq % 3) as i64 }
    }

    /// The mix, in words.
    pub fn describe(&self) -> String {
        let items = self.items_per_cart.max(1);
        match self.then {
            Then::NewCart => format!(
                "add-items only: {items} per cart, then the slot starts a new cart ({:.0} % of add-items open \
                 a new cart stream); {} cart slots round-robin, {} products",
                100.0 / items as f64,
                self.carts,
                self.products
            ),
            Then::Checkout => format!(
                "{items} add-items then a checkout per cart ({:.0} % checkouts, {:.0} % of requests open a new \
                 cart stream); {} cart slots round-robin, {} products, {} customers",
                100.0 / (items + 1) as f64,
                100.0 / (items + 1) as f64,
                self.carts,
                self.products,
                self.customers
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cart_gets_its_items_then_one_checkout() {
        let plan = CartPlan { carts: 7, products: 5, items_per_cart: 3, then: Then::Checkout, customers: 2 };
        let mut items = std::collections::BTreeMap::<String, u64>::new();
        let mut checkouts = 0;
        for seq in 0..7 * 40 {
            match plan.op(seq) {
                CartOp::AddItem { cart_id, .. } => {
                    assert!(
                        !items.contains_key(&format!("{cart_id}:done")),
                        "{cart_id} got an item after checkout"
                    );
                    *items.entry(cart_id).or_default() += 1;
                }
                CartOp::CheckOut { cart_id, .. } => {
                    let count = items.get(&cart_id).copied().unwrap_or(0);
                    assert!((1..=3).contains(&count), "{cart_id} checked out with {count} items");
                    assert!(
                        items.insert(format!("{cart_id}:done"), 0).is_none(),
                        "{cart_id} checked out twice"
                    );
                    checkouts += 1;
                }
            }
        }
        assert_eq!(checkouts, 7 * 40 / 4);
    }

    #[test]
    fn new_carts_get_at_most_their_items() {
        let plan = CartPlan { carts: 5, products: 50, items_per_cart: 4, then: Then::NewCart, customers: 1 };
        let mut items = std::collections::BTreeMap::<String, u64>::new();
        for seq in 0..5 * 33 {
            match plan.op(seq) {
                CartOp::AddItem { cart_id, .. } => *items.entry(cart_id).or_default() += 1,
                CartOp::CheckOut { .. } => panic!("no checkouts"),
            }
        }
        assert!(items.values().all(|&n| (1..=4).contains(&n)), "{items:?}");
    }
}
