//! A serde serializer that only measures nesting: the depth check
//! [`to_value`](super::to_value) runs before building any `Value`.

/// Why [`DepthProbe`] stopped.
#[derive(Debug)]
pub(super) struct ProbeError {
    pub(super) message: String,
    pub(super) too_deep: bool,
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProbeError {}

impl serde::ser::Error for ProbeError {
    fn custom<M: std::fmt::Display>(msg: M) -> Self {
        ProbeError {
            message: format!("cannot be serialized: {msg}"),
            too_deep: false,
        }
    }
}

/// Deepest refused value dropped the usual (recursive) way: a few hundred
/// bytes of stack a level stays well inside a 2 MiB thread stack.
pub(super) const SAFE_DROP_DEPTH: usize = 1024;

/// A serializer that writes nothing and fails past `limit` levels of
/// maps, sequences and structs, so its own recursion is bounded.
#[derive(Clone, Copy)]
pub(super) struct DepthProbe {
    depth: usize,
    limit: usize,
}

impl DepthProbe {
    pub(super) fn new(limit: usize) -> Self {
        DepthProbe { depth: 1, limit }
    }

    fn enter(self) -> Result<DepthProbe, ProbeError> {
        if self.depth > self.limit {
            return Err(ProbeError {
                message: format!(
                    "nested deeper than {} levels of objects and arrays",
                    self.limit
                ),
                too_deep: true,
            });
        }
        Ok(DepthProbe {
            depth: self.depth + 1,
            limit: self.limit,
        })
    }
}

macro_rules! probe_leaves {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, _: $ty) -> Result<(), ProbeError> { Ok(()) })*
    };
}

impl serde::Serializer for DepthProbe {
    type Ok = ();
    type Error = ProbeError;
    type SerializeSeq = DepthProbe;
    type SerializeTuple = DepthProbe;
    type SerializeTupleStruct = DepthProbe;
    type SerializeTupleVariant = DepthProbe;
    type SerializeMap = DepthProbe;
    type SerializeStruct = DepthProbe;
    type SerializeStructVariant = DepthProbe;

    probe_leaves!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_none(self) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_some<T: serde::Serialize + ?Sized>(self, v: &T) -> Result<(), ProbeError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_newtype_struct<T: serde::Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), ProbeError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: serde::Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        v: &T,
    ) -> Result<(), ProbeError> {
        // serde_json writes `{"Variant": value}`: one level more.
        v.serialize(self.enter()?)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<DepthProbe, ProbeError> {
        self.enter()
    }
    fn serialize_tuple(self, _: usize) -> Result<DepthProbe, ProbeError> {
        self.enter()
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<DepthProbe, ProbeError> {
        self.enter()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<DepthProbe, ProbeError> {
        self.enter()?.enter()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<DepthProbe, ProbeError> {
        self.enter()
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<DepthProbe, ProbeError> {
        self.enter()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<DepthProbe, ProbeError> {
        self.enter()?.enter()
    }
}

macro_rules! probe_compound {
    ($($trait:ident { $($method:ident),* })*) => {
        $(impl serde::ser::$trait for DepthProbe {
            type Ok = ();
            type Error = ProbeError;
            $(fn $method<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ProbeError> {
                v.serialize(*self)
            })*
            fn end(self) -> Result<(), ProbeError> {
                Ok(())
            }
        })*
    };
}

probe_compound! {
    SerializeSeq { serialize_element }
    SerializeTuple { serialize_element }
    SerializeTupleStruct { serialize_field }
    SerializeTupleVariant { serialize_field }
}

impl serde::ser::SerializeMap for DepthProbe {
    type Ok = ();
    type Error = ProbeError;
    fn serialize_key<T: serde::Serialize + ?Sized>(&mut self, k: &T) -> Result<(), ProbeError> {
        k.serialize(*self)
    }
    fn serialize_value<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ProbeError> {
        v.serialize(*self)
    }
    fn end(self) -> Result<(), ProbeError> {
        Ok(())
    }
}

macro_rules! probe_fields {
    ($($trait:ident)*) => {
        $(impl serde::ser::$trait for DepthProbe {
            type Ok = ();
            type Error = ProbeError;
            fn serialize_field<T: serde::Serialize + ?Sized>(
                &mut self,
                _: &'static str,
                v: &T,
            ) -> Result<(), ProbeError> {
                v.serialize(*self)
            }
            fn end(self) -> Result<(), ProbeError> {
                Ok(())
            }
        })*
    };
}

probe_fields! { SerializeStruct SerializeStructVariant }
