//! Network interfaces backed by a device, their receive queues and interrupt lines.

use crate::topology::parse_cpu_list;
use crate::Root;

/// One interrupt line of a NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Irq {
    /// The IRQ number (`/proc/irq/N`).
    pub number: u32,
    /// Its name in `/proc/interrupts` (e.g. `eth0-TxRx-3`).
    pub name: String,
    /// `/proc/irq/N/smp_affinity_list`, when readable.
    pub affinity: Option<Vec<usize>>,
}

/// A network interface with a device behind it (loopback and virtual ones are left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// Interface name.
    pub name: String,
    /// The device it sits on (`/sys/class/net/NAME/device` link name), when known.
    pub device: Option<String>,
    /// Number of `rx-*` queues.
    pub rx_queues: usize,
    /// Its interrupt lines.
    pub irqs: Vec<Irq>,
}

/// `(number, name)` of every numbered line in `/proc/interrupts`.
pub fn parse_interrupts(text: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((num, rest)) = line.trim_start().split_once(':') else {
            continue;
        };
        let Ok(num) = num.trim().parse::<u32>() else {
            continue;
        };
        if let Some(name) = rest.split_whitespace().last() {
            out.push((num, name.to_string()));
        }
    }
    out
}

fn irq_matches(irq_name: &str, nic: &str, device: Option<&str>, msi: &[u32], num: u32) -> bool {
    if msi.contains(&num) {
        return true;
    }
    let starts = |p: &str| {
        irq_name == p
            || irq_name.starts_with(&format!("{p}-"))
            || irq_name.starts_with(&format!("{p}@"))
    };
    if starts(nic) {
        return true;
    }
    match device {
        // virtio: `virtio2-input.0`; mlx5 and others: `mlx5_comp3@pci:0000:3b:00.0`.
        Some(dev) => starts(dev) || irq_name.ends_with(&format!(":{dev}")),
        None => false,
    }
}

/// Every interface under `/sys/class/net` that has a `device`, with its queues and IRQs.
pub fn discover(root: &Root) -> Vec<Nic> {
    let Ok(names) = root.list("/sys/class/net") else {
        return Vec::new();
    };
    let interrupts = root
        .read("/proc/interrupts")
        .map(|t| parse_interrupts(&t))
        .unwrap_or_default();
    let mut nics = Vec::new();
    for name in names {
        let base = format!("/sys/class/net/{name}");
        if name == "lo" || !root.exists(&format!("{base}/device")) {
            continue;
        }
        let device = root.link_name(&format!("{base}/device"));
        let msi: Vec<u32> = root
            .list(&format!("{base}/device/msi_irqs"))
            .unwrap_or_default()
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        let rx_queues = root
            .list(&format!("{base}/queues"))
            .unwrap_or_default()
            .iter()
            .filter(|q| q.starts_with("rx-"))
            .count();
        let irqs = interrupts
            .iter()
            .filter(|(num, irq)| irq_matches(irq, &name, device.as_deref(), &msi, *num))
            .map(|(num, irq)| Irq {
                number: *num,
                name: irq.clone(),
                affinity: root
                    .read_trim(&format!("/proc/irq/{num}/smp_affinity_list"))
                    .ok()
                    .and_then(|s| parse_cpu_list(&s).ok()),
            })
            .collect();
        nics.push(Nic {
            name,
            device,
            rx_queues,
            irqs,
        });
    }
    nics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupts_lines() {
        let text = "           CPU0       CPU1\n 36:  0  5591  PCI-MSIX-0000:00:02.0 1-edge  virtio1-req.0\n\
                    NMI: 0 0 Non-maskable interrupts\n 41: 1 2 IR-PCI-MSI 524288-edge eth0-TxRx-0\n";
        assert_eq!(
            parse_interrupts(text),
            vec![(36, "virtio1-req.0".into()), (41, "eth0-TxRx-0".into())]
        );
        assert!(irq_matches("eth0-TxRx-0", "eth0", None, &[], 41));
        assert!(!irq_matches("eth01-TxRx-0", "eth0", None, &[], 41));
        assert!(irq_matches(
            "virtio2-input.0",
            "eth0",
            Some("virtio2"),
            &[],
            1
        ));
        assert!(!irq_matches(
            "virtio21-input.0",
            "eth0",
            Some("virtio2"),
            &[],
            1
        ));
        assert!(irq_matches(
            "mlx5_comp3@pci:0000:3b:00.0",
            "ens1",
            Some("0000:3b:00.0"),
            &[],
            1
        ));
        assert!(irq_matches("whatever", "ens1", None, &[7], 7));
    }
}
