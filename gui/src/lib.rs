//! The store window's logic, apart from its widgets: the view models and
//! the worker thread that does the store work. `appbox-gui` is the window.

pub mod model;
pub mod worker;
