//! What the windows show, as plain data and pure functions: no widgets, so
//! it is tested without a display.

pub mod catalog;
pub mod devices;
pub mod lists;
pub mod permissions;
pub mod portal_dialog;
pub mod text;
pub mod toggles;
