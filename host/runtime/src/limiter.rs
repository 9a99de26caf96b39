//! The per-instance memory budget: one [`wasmtime::ResourceLimiter`] that
//! sums every linear memory and every table of an instance against one
//! limit, and records what it refused.
//!
//! wasmtime's own `StoreLimits` bounds each memory separately, so a
//! component with eight memories of 200 MiB under a 256 MiB limit took 1.6
//! GB, and tables were not bounded at all. Here the budget is the whole
//! instance: the host's resident memory stays within the sum of the plugin
//! budgets plus a fixed overhead.
//!
//! The runtime classifies a failed call as out-of-memory from this record
//! (and the typed error it returns), never from an error's text.

use std::fmt;

/// Bytes charged per table element. A funcref slot is one pointer in
/// wasmtime; charging a pointer's size bounds what a table really costs.
pub(crate) const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// What kind of growth the budget refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Growth {
    Memory,
    Table,
}

/// A refused growth: returned to wasmtime as the error (so the guest traps
/// at once) and kept in the budget for the runtime to classify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BudgetExceeded {
    pub(crate) growth: Growth,
    /// Bytes the growth asked for.
    pub(crate) requested: usize,
    /// Bytes in use (memories and tables) when it asked.
    pub(crate) in_use: usize,
    /// The budget.
    pub(crate) limit: usize,
}

impl fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "growing a {} by {} bytes would take the instance to {} bytes, over its budget of {} bytes",
            match self.growth {
                Growth::Memory => "linear memory",
                Growth::Table => "table",
            },
            self.requested,
            self.in_use.saturating_add(self.requested),
            self.limit
        )
    }
}

impl std::error::Error for BudgetExceeded {}

/// One budget for all memories and tables of one instance (one wasmtime
/// `Store`).
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    limit: usize,
    memory_bytes: usize,
    table_bytes: usize,
    max_memories: usize,
    max_tables: usize,
    /// The last growth granted, taken back if wasmtime then fails it.
    last_grant: Option<(Growth, usize)>,
    refused: Option<BudgetExceeded>,
}

impl MemoryBudget {
    pub(crate) fn new(limit: usize, max_memories: usize, max_tables: usize) -> Self {
        MemoryBudget {
            limit,
            memory_bytes: 0,
            table_bytes: 0,
            max_memories,
            max_tables,
            last_grant: None,
            refused: None,
        }
    }

    /// Bytes in use by memories and tables.
    pub(crate) fn in_use(&self) -> usize {
        self.memory_bytes.saturating_add(self.table_bytes)
    }

    /// Takes the record of the last refused growth, if any.
    pub(crate) fn take_refusal(&mut self) -> Option<BudgetExceeded> {
        self.refused.take()
    }

    fn grow(&mut self, growth: Growth, extra: usize) -> wasmtime::Result<bool> {
        let in_use = self.in_use();
        if in_use.checked_add(extra).is_none_or(|t| t > self.limit) {
            let refusal = BudgetExceeded {
                growth,
                requested: extra,
                in_use,
                limit: self.limit,
            };
            self.refused = Some(refusal);
            // An error, not `Ok(false)`: a guest that ignores a failed
            // `memory.grow` would go on to fail somewhere less clear.
            return Err(wasmtime::Error::new(refusal));
        }
        match growth {
            Growth::Memory => self.memory_bytes += extra,
            Growth::Table => self.table_bytes += extra,
        }
        self.last_grant = Some((growth, extra));
        Ok(true)
    }

    fn undo_last(&mut self) {
        match self.last_grant.take() {
            Some((Growth::Memory, n)) => self.memory_bytes -= n,
            Some((Growth::Table, n)) => self.table_bytes -= n,
            None => {}
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(Growth::Memory, desired.saturating_sub(current))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.undo_last();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let extra = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow(Growth::Table, extra)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.undo_last();
        Ok(())
    }

    fn memories(&self) -> usize {
        self.max_memories
    }

    fn tables(&self) -> usize {
        self.max_tables
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn memories_and_tables_share_one_budget() {
        let mut b = MemoryBudget::new(1000, 4, 4);
        assert!(b.memory_growing(0, 600, None).unwrap());
        assert!(b.table_growing(0, 25, None).unwrap()); // 200 bytes
        assert_eq!(b.in_use(), 600 + 25 * TABLE_ELEMENT_BYTES);
        let e = b.memory_growing(0, 400, None).unwrap_err();
        let r = *e.downcast_ref::<BudgetExceeded>().unwrap();
        assert_eq!(r.growth, Growth::Memory);
        assert_eq!(b.take_refusal(), Some(r));
        assert_eq!(b.take_refusal(), None);
        // A grant that wasmtime then fails is given back.
        assert!(b.memory_growing(600, 700, None).unwrap());
        b.memory_grow_failed(wasmtime::Error::msg("x")).unwrap();
        assert_eq!(b.in_use(), 600 + 25 * TABLE_ELEMENT_BYTES);
        assert!(b.table_growing(0, usize::MAX, None).is_err());
    }
}
