//! Wire code enums: one definition gives the enum, its name in the specification, its code,
//! the conversions both ways and `Display` in words.

/// Defines a C-like enum of wire codes (PDU types, opcodes, reasons, statuses): the enum with
/// its variants' codes, `name()` (the specification's name, for errors in words), `code()`,
/// `TryFrom<repr>` (an unknown code becomes the error expression given, with the raw code
/// bound to the identifier given), `From<enum> for repr`, and `Display` (the name).
///
/// ```
/// use ulp_ddp_core::wire_codes;
///
/// wire_codes! {
///     /// A toy status.
///     #[derive(Clone, Copy, Debug, Eq, PartialEq)]
///     pub enum Status: u8 {
///         /// It worked.
///         Good = 0 => "good",
///         /// It did not.
///         Bad = 2 => "bad",
///     }
///     unknown(code) -> String => format!("unknown status {code}");
/// }
///
/// assert_eq!(Status::try_from(2), Ok(Status::Bad));
/// assert_eq!(Status::try_from(1), Err("unknown status 1".to_string()));
/// assert_eq!((Status::Bad.code(), Status::Bad.to_string()), (2, "bad".to_string()));
/// ```
#[macro_export]
macro_rules! wire_codes {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: $repr:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal => $text:literal, )+
        }
        unknown($raw:ident) -> $err_ty:ty => $err:expr;
    ) => {
        $(#[$meta])*
        #[repr($repr)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $code, )+
        }

        impl $name {
            /// The code's name in the specification.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }

            /// The code on the wire.
            pub const fn code(self) -> $repr {
                self as $repr
            }
        }

        impl ::core::convert::TryFrom<$repr> for $name {
            type Error = $err_ty;

            fn try_from($raw: $repr) -> ::core::result::Result<Self, $err_ty> {
                match $raw {
                    $( $code => Ok(Self::$variant), )+
                    #[allow(unreachable_patterns)]
                    _ => Err($err),
                }
            }
        }

        impl ::core::convert::From<$name> for $repr {
            fn from(v: $name) -> Self {
                v as $repr
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
