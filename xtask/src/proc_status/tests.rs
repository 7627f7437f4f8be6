//! Reading a process's memory from /proc.

use super::kib;

#[test]
fn this_process_has_a_peak_at_least_its_resident_memory_and_no_unknown_field() {
    // Resident memory first: the peak read after it can only be as high or higher.
    let now = kib(Some(std::process::id()), "VmRSS").expect("VmRSS of this process by its pid");
    let peak = kib(None, "VmHWM").expect("VmHWM of this process");
    assert!(peak > 0 && peak >= now, "peak {peak} KiB, now {now} KiB");
    // A field name must match whole: "VmHW" is no field.
    assert_eq!(kib(None, "VmHW"), None);
    assert_eq!(kib(None, "NoSuchField"), None);
}
