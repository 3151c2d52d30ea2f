//! The simulated carrier's phone numbers: an inventory per country, the same on every start,
//! and the numbers each account holds.

use std::collections::{BTreeMap, HashMap};

use sms_twilio::numbers::{Capabilities, Category, IncomingNumber};

/// One number of the inventory.
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    pub(crate) country: &'static str,
    pub(crate) category: Category,
    pub(crate) capabilities: Capabilities,
    pub(crate) locality: &'static str,
    pub(crate) region: Option<&'static str>,
}

/// Numbers for sale and numbers held.
#[derive(Debug, Default)]
pub(crate) struct Numbers {
    /// Every number the carrier has (sold or not), by E.164.
    pub(crate) listings: BTreeMap<String, Listing>,
    /// Held numbers: sid → resource.
    pub(crate) held: HashMap<String, IncomingNumber>,
    /// Held numbers: E.164 → sid.
    pub(crate) by_number: HashMap<String, String>,
    /// Successful rents, by number, for tests: a number bought twice shows here.
    pub(crate) rents: HashMap<String, u32>,
}

/// (country, category, E.164 prefix the last two digits are added to, capabilities,
/// locality, state or province).
pub(crate) type Block = (
    &'static str,
    Category,
    &'static str,
    (bool, bool, bool),
    &'static str,
    Option<&'static str>,
);

/// Voice, SMS, MMS.
pub(crate) const ALL: (bool, bool, bool) = (true, true, true);
pub(crate) const TEXT: (bool, bool, bool) = (true, true, false);
pub(crate) const VOICE: (bool, bool, bool) = (true, false, false);

pub(crate) const BLOCKS: &[Block] = &[
    (
        "US",
        Category::Local,
        "+141555503",
        ALL,
        "San Francisco",
        Some("CA"),
    ),
    (
        "US",
        Category::Local,
        "+151055503",
        ALL,
        "Oakland",
        Some("CA"),
    ),
    (
        "US",
        Category::Local,
        "+121255503",
        ALL,
        "New York",
        Some("NY"),
    ),
    (
        "US",
        Category::Local,
        "+190755503",
        VOICE,
        "Anchorage",
        Some("AK"),
    ),
    ("US", Category::TollFree, "+183355503", ALL, "", None),
    (
        "CA",
        Category::Local,
        "+141655503",
        ALL,
        "Toronto",
        Some("ON"),
    ),
    (
        "CA",
        Category::Local,
        "+160455503",
        ALL,
        "Vancouver",
        Some("BC"),
    ),
    ("CA", Category::TollFree, "+185555503", ALL, "", None),
    (
        "PR",
        Category::Local,
        "+178723457",
        TEXT,
        "San Juan",
        Some("PR"),
    ),
    ("AU", Category::Mobile, "+614123457", ALL, "", None),
    ("AU", Category::Local, "+612123457", VOICE, "Sydney", None),
    ("GB", Category::Mobile, "+4474001235", TEXT, "", None),
    (
        "GB",
        Category::Local,
        "+4412123457",
        VOICE,
        "Birmingham",
        None,
    ),
    ("DE", Category::Local, "+49301235", VOICE, "Berlin", None),
    ("FR", Category::Mobile, "+336123457", TEXT, "", None),
    ("FR", Category::Local, "+331234568", VOICE, "Paris", None),
    ("BE", Category::Mobile, "+324701235", TEXT, "", None),
    ("BE", Category::Local, "+32123457", VOICE, "Brussels", None),
    ("DK", Category::Mobile, "+45321235", TEXT, "", None),
    ("IL", Category::Mobile, "+9725023457", TEXT, "", None),
    (
        "IL",
        Category::Local,
        "+972212346",
        VOICE,
        "Jerusalem",
        None,
    ),
    ("ZA", Category::Mobile, "+277112346", TEXT, "", None),
    (
        "ZA",
        Category::Local,
        "+271012346",
        VOICE,
        "Johannesburg",
        None,
    ),
    ("AT", Category::Mobile, "+4366412346", TEXT, "", None),
    ("AT", Category::Local, "+4312345679", VOICE, "Vienna", None),
    ("CH", Category::Mobile, "+417812346", TEXT, "", None),
    ("CH", Category::Local, "+412123457", VOICE, "Lausanne", None),
    ("FI", Category::Mobile, "+3584123457", TEXT, "", None),
    ("FI", Category::Local, "+358131235", VOICE, "Joensuu", None),
    ("NL", Category::Mobile, "+316123457", TEXT, "", None),
    (
        "NL",
        Category::Local,
        "+311012346",
        VOICE,
        "Rotterdam",
        None,
    ),
    ("PL", Category::Mobile, "+485123457", TEXT, "", None),
    ("PL", Category::Local, "+481234568", VOICE, "Kraków", None),
    ("SE", Category::Mobile, "+467012346", TEXT, "", None),
    ("SE", Category::Local, "+4681235", VOICE, "Stockholm", None),
];

/// Numbers per block.
pub(crate) const PER_BLOCK: usize = 12;

impl Numbers {
    /// The inventory: every valid number of each block, the first [`PER_BLOCK`] of them.
    pub(crate) fn stocked() -> Numbers {
        let mut listings = BTreeMap::new();
        for &(country, category, prefix, (voice, sms, mms), locality, region) in BLOCKS {
            let numbers = (0..100)
                .map(|i| format!("{prefix}{i:02}"))
                .filter(|n| {
                    sms_core::PhoneNumber::parse_valid(n, None).is_ok_and(|p| {
                        if category == Category::TollFree {
                            // North American toll-free numbers belong to no one country.
                            p.number_type() == sms_core::NumberType::TollFree
                        } else {
                            p.region().is_some_and(|r| r.as_str() == country)
                        }
                    })
                })
                .take(PER_BLOCK);
            for n in numbers {
                listings.insert(
                    n,
                    Listing {
                        country,
                        category,
                        capabilities: Capabilities { voice, sms, mms },
                        locality,
                        region,
                    },
                );
            }
        }
        Numbers {
            listings,
            ..Numbers::default()
        }
    }

    /// Whether the carrier knows `number` at all (numbers outside its inventory are someone
    /// else's, and the simulator lets them through as it always did).
    pub(crate) fn knows(&self, number: &str) -> bool {
        self.listings.contains_key(number)
    }

    /// The held number `number`, if an account holds it.
    pub(crate) fn holder(&self, number: &str) -> Option<&IncomingNumber> {
        self.by_number
            .get(number)
            .and_then(|sid| self.held.get(sid))
    }

    /// Times `number` was rented.
    pub(crate) fn rents(&self, number: &str) -> u32 {
        self.rents.get(number).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every supported country has numbers; the blocks' numbers are all valid and where they
    /// say they are.
    #[test]
    fn the_inventory_covers_every_supported_country() {
        let numbers = Numbers::stocked();
        let mut short = Vec::new();
        for &(country, category, prefix, ..) in BLOCKS {
            let n = numbers
                .listings
                .iter()
                .filter(|(num, l)| {
                    l.country == country && l.category == category && num.starts_with(prefix)
                })
                .count();
            if n != PER_BLOCK {
                short.push(format!("{country} {category:?} {prefix}: {n}"));
            }
        }
        assert!(short.is_empty(), "{short:#?}");
        for country in sms_core::phone::SMS_COUNTRIES {
            let n = numbers
                .listings
                .values()
                .filter(|l| l.country == country)
                .count();
            assert!(n >= PER_BLOCK, "{country}: {n} numbers");
        }
        // Germany: only voice-only numbers; Anchorage too.
        assert!(
            numbers
                .listings
                .iter()
                .filter(|(n, l)| l.country == "DE" || n.starts_with("+1907"))
                .all(|(_, l)| !l.capabilities.sms)
        );
    }
}
