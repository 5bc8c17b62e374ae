//! Timings for `tests/bench/gui.sh`, off unless `APPBOX_GUI_TIMING` holds the
//! launch time (nanoseconds since the epoch): the first frame, the first frame
//! showing the catalog, and each keystroke to the frame with its results. They
//! go to stderr as `appbox-gui timing: WHAT MS`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gtk::prelude::*;
use gtk4 as gtk;

thread_local! {
    /// When the process was launched, if timings are on.
    static LAUNCHED: Option<SystemTime> = std::env::var("APPBOX_GUI_TIMING")
        .ok()
        .and_then(|ns| ns.parse::<u64>().ok())
        .map(|ns| UNIX_EPOCH + Duration::from_nanos(ns));
    /// The last key press not yet shown with its results.
    static KEY_PRESSED: Cell<Option<Instant>> = const { Cell::new(None) };
}

fn launched() -> Option<SystemTime> {
    LAUNCHED.with(|l| *l)
}

fn report(what: &str, elapsed: Duration) {
    eprintln!(
        "appbox-gui timing: {what} {:.2}",
        elapsed.as_secs_f64() * 1000.0
    );
}

/// Runs `then` once, after the next frame of `widget` is painted.
fn after_next_paint(widget: &impl IsA<gtk::Widget>, then: impl FnOnce() + 'static) {
    let Some(clock) = widget.frame_clock() else {
        return;
    };
    let then = RefCell::new(Some(then));
    let handler = Rc::new(RefCell::new(None));
    let handler_inside = handler.clone();
    let id = clock.connect_after_paint(move |clock| {
        if let Some(then) = then.borrow_mut().take() {
            then();
        }
        if let Some(id) = handler_inside.borrow_mut().take() {
            clock.disconnect(id);
        }
    });
    *handler.borrow_mut() = Some(id);
    widget.queue_draw();
}

/// Reports the launch to `window`'s first frame, and watches key presses.
pub(crate) fn watch(window: &impl IsA<gtk::Widget>) {
    let Some(launched) = launched() else {
        return;
    };
    after_next_paint(window, move || {
        report("first-frame", launched.elapsed().unwrap_or_default())
    });
    let keys = gtk::EventControllerKey::new();
    keys.set_propagation_phase(gtk::PropagationPhase::Capture);
    keys.connect_key_pressed(|_, _, _, _| {
        KEY_PRESSED.with(|k| k.set(Some(Instant::now())));
        gtk::glib::Propagation::Proceed
    });
    window.add_controller(keys);
}

/// The catalog is on screen: the first time, reports launch to that frame.
pub(crate) fn catalog_shown(widget: &impl IsA<gtk::Widget>, rows: usize) {
    thread_local!(static DONE: Cell<bool> = const { Cell::new(false) });
    let Some(launched) = launched() else {
        return;
    };
    if DONE.with(|d| d.replace(true)) {
        return;
    }
    after_next_paint(widget, move || {
        report(
            &format!("catalog-frame rows={rows}"),
            launched.elapsed().unwrap_or_default(),
        )
    });
}

/// The results of a search are set: reports the key press to their frame.
pub(crate) fn results_shown(widget: &impl IsA<gtk::Widget>) {
    let Some(pressed) = KEY_PRESSED.with(|k| k.take()) else {
        return;
    };
    after_next_paint(widget, move || report("keystroke", pressed.elapsed()));
}
