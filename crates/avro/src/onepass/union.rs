//! Unions, with the converter's rule: `null` takes the null branch; an object of one key naming a branch
//! (`{"<type>": value}`, Avro-JSON's form) takes that branch if its value fits; otherwise the first branch
//! of a fitting kind that converts. The error is the tagged branch's, else the only candidate's, else
//! `expected one of [...]`.

use super::json::{capture_array, capture_object, skip_rest, skip_seq, Atom, Key, Kind, Seed};
use super::plan::{Node, Plan, UnionPlan};
use super::write::{expected, zigzag};
use super::{Ctx, Outcome};
use crate::convert::{json_kind, ConvertError};
use serde::de::{DeserializeSeed, Error, MapAccess, SeqAccess};
use serde_json::Value as Json;

impl Ctx {
    /// The single branch a container of `kind` can stream into: exactly one candidate, and resolved.
    fn only_branch(plan: &Plan, u: &UnionPlan, kind: Kind) -> Option<u32> {
        match *u.by_kind[kind as usize] {
            [i] if !matches!(plan.node(u.branches[i as usize]), Node::Unresolved(_)) => Some(i),
            _ => None,
        }
    }

    /// A scalar (whole, so branches are tried without buffering anything).
    pub(crate) fn union_atom(&mut self, plan: &Plan, u: &UnionPlan, atom: Atom<'_>) -> Outcome {
        if let Atom::Null = atom {
            let i = u.null_branch.ok_or_else(|| expected(&u.expected, atom))?;
            zigzag(&mut self.out, i64::from(i));
            return Ok(());
        }
        let mut first_error = None;
        let mut candidates = 0;
        for &i in u.by_kind[atom.kind() as usize].iter() {
            let node = u.branches[i as usize];
            if let Node::Unresolved(message) = plan.node(node) {
                return Err(ConvertError::new(&**message));
            }
            candidates += 1;
            let at = self.out.len();
            zigzag(&mut self.out, i64::from(i));
            match self.atom(plan, node, atom) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.out.truncate(at);
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if candidates == 1 => Err(e),
            _ => Err(expected(&u.expected, atom)),
        }
    }

    /// An array: streamed into the array branch, if there is exactly one.
    pub(crate) fn union_seq<'de, A: SeqAccess<'de>>(
        &mut self,
        plan: &Plan,
        u: &UnionPlan,
        mut seq: A,
    ) -> Result<Outcome, A::Error> {
        if let Some(i) = Self::only_branch(plan, u, Kind::Array) {
            let at = self.out.len();
            zigzag(&mut self.out, i64::from(i));
            let outcome = self.seq(plan, u.branches[i as usize], seq)?;
            if outcome.is_err() {
                self.out.truncate(at);
            }
            return Ok(outcome);
        }
        if u.by_kind[Kind::Array as usize].is_empty() {
            skip_seq(&mut seq)?;
            return Ok(Err(expected(&u.expected, Atom::Array)));
        }
        let json = capture_array(&mut seq)?;
        self.union_json(plan, u, &json).map_err(A::Error::custom)
    }

    /// An object: streamed into the one record, map or duration branch, unless its first key names a
    /// branch (it may be the tagged form) or several branches could take it.
    pub(crate) fn union_map<'de, A: MapAccess<'de>>(
        &mut self,
        plan: &Plan,
        u: &UnionPlan,
        mut map: A,
    ) -> Result<Outcome, A::Error> {
        let first = map.next_key_seed(Key)?;
        let tagged = first.as_deref().is_some_and(|k| u.tag_branch(k).is_some());
        if !tagged {
            if let Some(i) = Self::only_branch(plan, u, Kind::Object) {
                let at = self.out.len();
                zigzag(&mut self.out, i64::from(i));
                let outcome = self.map(plan, u.branches[i as usize], map, first)?;
                if outcome.is_err() {
                    self.out.truncate(at);
                }
                return Ok(outcome);
            }
            if u.by_kind[Kind::Object as usize].is_empty() {
                skip_rest(&mut map, first.is_some())?;
                return Ok(Err(expected(&u.expected, Atom::Object)));
            }
        }
        let json = capture_object(&mut map, first)?;
        self.union_json(plan, u, &json).map_err(A::Error::custom)
    }

    /// The rare path: the whole value is at hand as a tree; each branch is tried by walking it.
    pub(crate) fn union_json(
        &mut self,
        plan: &Plan,
        u: &UnionPlan,
        json: &Json,
    ) -> Result<Outcome, serde_json::Error> {
        let described = |json: &Json| ConvertError::expected(&u.expected, json);
        if json.is_null() {
            return Ok(match u.null_branch {
                Some(i) => {
                    zigzag(&mut self.out, i64::from(i));
                    Ok(())
                }
                None => Err(described(json)),
            });
        }
        let mut tagged_error = None;
        if let Some((key, inner)) = json
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.iter().next())
        {
            if let Some(i) = u.tag_branch(key) {
                let at = self.out.len();
                zigzag(&mut self.out, i64::from(i));
                match (Seed {
                    ctx: self,
                    plan,
                    node: u.branches[i as usize],
                })
                .deserialize(inner)?
                {
                    Ok(()) => return Ok(Ok(())),
                    Err(e) => {
                        self.out.truncate(at);
                        tagged_error = Some(e.in_key(key));
                    }
                }
            }
        }
        let kind = json_kind(json);
        let mut first_error = None;
        let mut candidates = 0;
        for &i in u.by_kind[kind as usize].iter() {
            let node = u.branches[i as usize];
            if let Node::Unresolved(message) = plan.node(node) {
                return Ok(Err(ConvertError::new(&**message)));
            }
            candidates += 1;
            let at = self.out.len();
            zigzag(&mut self.out, i64::from(i));
            match (Seed {
                ctx: self,
                plan,
                node,
            })
            .deserialize(json)?
            {
                Ok(()) => return Ok(Ok(())),
                Err(e) => {
                    self.out.truncate(at);
                    first_error.get_or_insert(e);
                }
            }
        }
        Ok(match (tagged_error, first_error) {
            (Some(e), _) => Err(e),
            (None, Some(e)) if candidates == 1 => Err(e),
            _ => Err(described(json)),
        })
    }
}
