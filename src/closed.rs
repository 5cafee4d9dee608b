//! Closed sets: enums whose every value has a stable name (probe kinds, notifier kinds, error
//! classes, alert states, delivery results).
//!
//! Such a set is written once, with [`closed_set!`](crate::closed_set): the enum, the list of
//! its values in order (`ALL`), each value's name (`as_str`), `Display`, `FromStr` from the name,
//! and a list for messages (`list`). Written by hand, the list and the names could drift from
//! the enum without a compile error; here they cannot.

/// Declares a closed set: an enum whose variants each carry their stable name.
///
/// ```
/// honeyguide::closed_set! {
///     /// A colour.
///     #[derive(Clone, Copy, Debug, PartialEq, Eq)]
///     pub enum Colour {
///         /// Red.
///         Red = "red",
///         /// Green.
///         Green = "green",
///     }
/// }
/// assert_eq!(Colour::ALL, [Colour::Red, Colour::Green]);
/// assert_eq!("green".parse::<Colour>(), Ok(Colour::Green));
/// assert_eq!(Colour::list(), "`red`, `green`");
/// ```
#[macro_export]
macro_rules! closed_set {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$variant_meta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$(stringify!($variant)),+].len()] = [$($name::$variant),+];

            /// The stable name: what configuration, labels, rules and `/status` use.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Every name, quoted and separated by commas, for messages.
            pub fn list() -> String {
                Self::ALL
                    .iter()
                    .map(|value| format!("`{}`", value.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = ();

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(()),
                }
            }
        }
    };
}
