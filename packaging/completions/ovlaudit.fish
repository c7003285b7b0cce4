# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_ovlaudit_global_optspecs
    string join \n h/help V/version
end

function __fish_ovlaudit_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_ovlaudit_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_ovlaudit_using_subcommand
    set -l cmd (__fish_ovlaudit_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c ovlaudit -n "__fish_ovlaudit_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ovlaudit -n "__fish_ovlaudit_needs_command" -s V -l version -d 'Print version'
complete -c ovlaudit -n "__fish_ovlaudit_needs_command" -f -a "report" -d 'Audit the host once and print a report (a table for people, JSON or NDJSON for programs)'
complete -c ovlaudit -n "__fish_ovlaudit_needs_command" -f -a "inspect" -d 'Show one container\'s or image\'s overlay stack as a tree: writable layer, init layer, image layers top first, each with its ids, size, sharers, largest files, copy-ups and the lower bytes it hides'
complete -c ovlaudit -n "__fish_ovlaudit_needs_command" -f -a "run" -d 'Run as a service: scan on an interval and soon after containers or mounts change, and send each scan\'s events to the sinks (NDJSON on standard output by default)'
complete -c ovlaudit -n "__fish_ovlaudit_needs_command" -f -a "check-config" -d 'Check a configuration file, print the effective configuration (file plus flags) as TOML, and exit'
complete -c ovlaudit -n "__fish_ovlaudit_needs_command" -f -a "check-sinks" -d 'Send one test event (dataset ovlaudit.check) to each configured sink and say which work'
complete -c ovlaudit -n "__fish_ovlaudit_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -s f -l format -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'One JSON document (schema ovlaudit.report/v1)'
ndjson\t'One JSON event per line, Elastic Common Schema names'
prometheus\t'Prometheus text exposition format (report only), for node_exporter\'s textfile collector'"
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -l threads -d 'Walker threads, shared across and within writable layers (0: 3 per CPU up to 16, never fewer than one per CPU; at most 1024)' -r
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -l section -d 'Print one section of the table: summary, containers, images, orphans, findings, volumes, build-cache or pods (the JSON document always carries every section)' -r -f -a "summary\t'Totals on one screen: writable, images, orphans, logs, findings by severity'
containers\t'Every container, largest writable layer first, and overlay mounts no container owns'
images\t'Every image with its size, shared and unique bytes, as `docker system df -v` counts them'
orphans\t'Storage that belongs to no image or container, largest first'
findings\t'Problems found, with their codes'
volumes\t'Local volumes with their size and the containers that mount them'
build-cache\t'BuildKit\'s build cache records'
pods\t'Kubernetes pods (containers the CRI created), largest writable layers first, with their containers\' writable layers and logs summed'"
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -l orphan-min-age -d 'Storage changed more recently than this is not called an orphan: it may belong to a pull, build or removal in progress. A duration with its unit (10m, 1h30m), or 0 to show every orphan' -r
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -l top -d 'List each writable layer\'s N largest files (path, apparent and allocated bytes; at most 100)' -r
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -l sort -d 'Order of the containers: writable or allocated bytes (largest first), name, created (newest first)' -r -f -a "writable\t'Writable bytes as Docker counts SizeRw, largest first'
allocated\t'Allocated bytes of the writable layer, largest first'
name\t'Name'
created\t'Creation time, newest first'"
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -l compare-budget -d 'Bytes of copied-up files that may be read to compare them with the image\'s copies, for the whole scan; what it does not cover is reported as unverified' -r
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -l docker-root -d 'Docker\'s data root, as the host names it [default: /var/lib/docker]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -l podman-root -d 'A containers-storage root (Podman, CRI-O), as the host names it; repeat for several. Replaces the defaults: /var/lib/containers/storage and the rootless stores under /root and /home/*, where they exist' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -l containerd-root -d 'A containerd root, as the host names it; repeat for several. Replaces the defaults: /var/lib/containerd and <docker-root>/containerd/daemon, where they exist' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -l proc -d 'The host\'s proc filesystem, as the host names it; it must hold the mount table 1/mountinfo [default: /proc]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -l root -d 'Prefix for every host path above: run inside a container with the host\'s / mounted at DIR (read-only) and the host\'s PID namespace, e.g. --root /host [default: /]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -l bytes -d 'Show sizes in the table as exact bytes instead of human units'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -s w -l wide -d 'Fit the table to no width: every column, full names, tags and paths (default: 80 columns, long cells cut with a marker)'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -l all -d 'List hidden build steps, every overlay mount of no known container and every build cache record (each summarised in one line by default)'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -l no-copy-ups -d 'Do not look for copy-ups and shadowed bytes (files of a writable layer that also exist in the image, and image files the container deleted)'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand report" -s V -l version -d 'Print version'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand inspect" -s f -l format -d 'Output format: table (a tree) or json' -r -f -a "table\t'Aligned columns for people'
json\t'One JSON document (schema ovlaudit.report/v1)'
ndjson\t'One JSON event per line, Elastic Common Schema names'
prometheus\t'Prometheus text exposition format (report only), for node_exporter\'s textfile collector'"
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand inspect" -l compare-budget -d 'Bytes of copied-up files that may be read to compare them with the lower copies' -r
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand inspect" -l docker-root -d 'Docker\'s data root, as the host names it [default: /var/lib/docker]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand inspect" -l podman-root -d 'A containers-storage root (Podman, CRI-O), as the host names it; repeat for several. Replaces the defaults: /var/lib/containers/storage and the rootless stores under /root and /home/*, where they exist' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand inspect" -l containerd-root -d 'A containerd root, as the host names it; repeat for several. Replaces the defaults: /var/lib/containerd and <docker-root>/containerd/daemon, where they exist' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand inspect" -l proc -d 'The host\'s proc filesystem, as the host names it; it must hold the mount table 1/mountinfo [default: /proc]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand inspect" -l root -d 'Prefix for every host path above: run inside a container with the host\'s / mounted at DIR (read-only) and the host\'s PID namespace, e.g. --root /host [default: /]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand inspect" -l bytes -d 'Show sizes as exact bytes instead of human units'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand inspect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand inspect" -s V -l version -d 'Print version'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand run" -s c -l config -d 'Configuration file [default: /etc/ovlaudit/ovlaudit.toml, which may be absent]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand run" -l interval -d 'Time between scans when nothing changes, e.g. 30s, 5m, 1h; from 1s to 7d [default: 60s]' -r
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand run" -l sink -d 'Where events go; repeat for several. Replaces the file\'s sinks [default: stdout:]. URIs: stdout:, file:/PATH, tcp://HOST:PORT, unix:///PATH, http://HOST:PORT/PATH, syslog+tcp://HOST:PORT, syslog+udp://HOST:PORT, syslog+unix:///dev/log, journald:' -r
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand run" -l docker-root -d 'Docker\'s data root, as the host names it [default: /var/lib/docker]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand run" -l podman-root -d 'A containers-storage root (Podman, CRI-O); repeat for several. Replaces the file\'s podman_roots [default: those of /var/lib/containers/storage and the rootless stores that exist]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand run" -l containerd-root -d 'A containerd root; repeat for several. Replaces the file\'s containerd_roots [default: those of /var/lib/containerd and <docker-root>/containerd/daemon that exist]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand run" -l proc -d 'The host\'s proc filesystem, as the host names it [default: /proc]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand run" -l root -d 'Prefix for every host path: the host\'s / mounted at DIR in a container [default: /]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand run" -l threads -d 'Walker threads, shared across and within writable layers (0: 3 per CPU up to 16, never fewer than one per CPU; at most 1024) [default: 0]' -r
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand run" -l log-level -d 'error, warn, info, debug, trace or off [default: info]' -r
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand run" -l metrics-listen -d 'Serve Prometheus metrics on http://ADDR/metrics, e.g. 127.0.0.1:9469 [default: off]' -r
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand run" -s V -l version -d 'Print version'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-config" -s c -l config -d 'Configuration file [default: /etc/ovlaudit/ovlaudit.toml, which may be absent]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-config" -l interval -d 'Time between scans when nothing changes, e.g. 30s, 5m, 1h; from 1s to 7d [default: 60s]' -r
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-config" -l sink -d 'Where events go; repeat for several. Replaces the file\'s sinks [default: stdout:]. URIs: stdout:, file:/PATH, tcp://HOST:PORT, unix:///PATH, http://HOST:PORT/PATH, syslog+tcp://HOST:PORT, syslog+udp://HOST:PORT, syslog+unix:///dev/log, journald:' -r
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-config" -l docker-root -d 'Docker\'s data root, as the host names it [default: /var/lib/docker]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-config" -l podman-root -d 'A containers-storage root (Podman, CRI-O); repeat for several. Replaces the file\'s podman_roots [default: those of /var/lib/containers/storage and the rootless stores that exist]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-config" -l containerd-root -d 'A containerd root; repeat for several. Replaces the file\'s containerd_roots [default: those of /var/lib/containerd and <docker-root>/containerd/daemon that exist]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-config" -l proc -d 'The host\'s proc filesystem, as the host names it [default: /proc]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-config" -l root -d 'Prefix for every host path: the host\'s / mounted at DIR in a container [default: /]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-config" -l threads -d 'Walker threads, shared across and within writable layers (0: 3 per CPU up to 16, never fewer than one per CPU; at most 1024) [default: 0]' -r
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-config" -l log-level -d 'error, warn, info, debug, trace or off [default: info]' -r
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-config" -l metrics-listen -d 'Serve Prometheus metrics on http://ADDR/metrics, e.g. 127.0.0.1:9469 [default: off]' -r
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-config" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-config" -s V -l version -d 'Print version'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-sinks" -s c -l config -d 'Configuration file [default: /etc/ovlaudit/ovlaudit.toml, which may be absent]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-sinks" -l sink -d 'A sink to try; repeat for several. Replaces the file\'s sinks. URIs as for `run --sink`' -r
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-sinks" -l root -d 'Where the host\'s / is, for its machine id in the event\'s agent.id [default: /]' -r -F
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-sinks" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand check-sinks" -s V -l version -d 'Print version'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand help; and not __fish_seen_subcommand_from report inspect run check-config check-sinks help" -f -a "report" -d 'Audit the host once and print a report (a table for people, JSON or NDJSON for programs)'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand help; and not __fish_seen_subcommand_from report inspect run check-config check-sinks help" -f -a "inspect" -d 'Show one container\'s or image\'s overlay stack as a tree: writable layer, init layer, image layers top first, each with its ids, size, sharers, largest files, copy-ups and the lower bytes it hides'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand help; and not __fish_seen_subcommand_from report inspect run check-config check-sinks help" -f -a "run" -d 'Run as a service: scan on an interval and soon after containers or mounts change, and send each scan\'s events to the sinks (NDJSON on standard output by default)'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand help; and not __fish_seen_subcommand_from report inspect run check-config check-sinks help" -f -a "check-config" -d 'Check a configuration file, print the effective configuration (file plus flags) as TOML, and exit'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand help; and not __fish_seen_subcommand_from report inspect run check-config check-sinks help" -f -a "check-sinks" -d 'Send one test event (dataset ovlaudit.check) to each configured sink and say which work'
complete -c ovlaudit -n "__fish_ovlaudit_using_subcommand help; and not __fish_seen_subcommand_from report inspect run check-config check-sinks help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
