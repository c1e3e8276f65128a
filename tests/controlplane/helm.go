package main

// helm: the two chart commands the tests need (template, lint), written on
// Helm's own library packages because Helm's cmd/helm is a main package.
// Rendering goes through action.Install in client-only dry-run mode, exactly
// what `helm template` does, so values.schema.json is validated by Helm itself
// and the output is what a real `helm install` would send.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/lint/support"
	"k8s.io/component-base/version"
)

const helmUsage = `usage:
  controlplane helm template RELEASE CHART [-n NS] [-f values.yaml]... [--set k=v]... [--include-crds]
  controlplane helm lint CHART [-n NS] [-f values.yaml]... [--set k=v]... [--strict]
`

func runHelm(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, helmUsage)
		return 2
	}
	var err error
	switch args[0] {
	case "template":
		err = helmTemplate(args[1:], os.Stdout)
	case "lint":
		err = helmLint(args[1:], os.Stdout)
	default:
		fmt.Fprintf(os.Stderr, "helm: unknown command %q\n%s", args[0], helmUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		return 1
	}
	return 0
}

// chartFlags are the flags both commands share, spelled as Helm spells them.
type chartFlags struct {
	set         *pflag.FlagSet
	namespace   string
	kubeVersion string
	values      values.Options
}

func newChartFlags(name string) *chartFlags {
	f := &chartFlags{set: pflag.NewFlagSet("helm "+name, pflag.ContinueOnError)}
	f.set.StringVarP(&f.namespace, "namespace", "n", "default", "release namespace")
	// Helm's own default is the Kubernetes minor its build was stamped with;
	// this binary's stamp is the control plane's version, so charts are
	// rendered for the cluster the tests run.
	f.set.StringVar(&f.kubeVersion, "kube-version", stampedKubeVersion(),
		"Kubernetes version for .Capabilities.KubeVersion and Chart.yaml kubeVersion")
	f.set.StringSliceVarP(&f.values.ValueFiles, "values", "f", nil, "values file (repeatable)")
	f.set.StringArrayVar(&f.values.Values, "set", nil, "key=value (repeatable)")
	f.set.StringArrayVar(&f.values.StringValues, "set-string", nil, "key=string (repeatable)")
	f.set.StringArrayVar(&f.values.JSONValues, "set-json", nil, "key=json (repeatable)")
	return f
}

// stampedKubeVersion is the version the build stamped (binary.py's ldflags),
// or "" in an unstamped build (go run), which leaves Helm's own default.
func stampedKubeVersion() string {
	stamped := version.Get().GitVersion
	if strings.HasPrefix(stamped, "v0.0.0") {
		return ""
	}
	return stamped
}

func (f *chartFlags) parse(args []string, positional int) ([]string, error) {
	if err := f.set.Parse(args); err != nil {
		return nil, err
	}
	if f.set.NArg() != positional {
		return nil, fmt.Errorf("expected %d arguments, got %d: %q\n%s",
			positional, f.set.NArg(), f.set.Args(), helmUsage)
	}
	return f.set.Args(), nil
}

// parseAll parses the arguments, then reads the values and the Kubernetes
// version they name: what every subcommand needs before it loads the chart.
func (f *chartFlags) parseAll(args []string, positional int) (
	[]string, map[string]interface{}, *chartutil.KubeVersion, error,
) {
	names, err := f.parse(args, positional)
	if err != nil {
		return nil, nil, nil, err
	}
	vals, err := f.mergedValues()
	if err != nil {
		return nil, nil, nil, err
	}
	kubeVersion, err := f.parsedKubeVersion()
	if err != nil {
		return nil, nil, nil, err
	}
	return names, vals, kubeVersion, nil
}

// mergedValues reads -f files and --set flags; only local files are
// accepted (no getter providers), so a test can never reach the network.
func (f *chartFlags) mergedValues() (map[string]interface{}, error) {
	return f.values.MergeValues(getter.Providers{})
}

func (f *chartFlags) parsedKubeVersion() (*chartutil.KubeVersion, error) {
	if f.kubeVersion == "" {
		return nil, nil
	}
	parsed, err := chartutil.ParseKubeVersion(f.kubeVersion)
	if err != nil {
		return nil, fmt.Errorf("invalid --kube-version %q: %w", f.kubeVersion, err)
	}
	return parsed, nil
}

func helmTemplate(args []string, out io.Writer) error {
	flags := newChartFlags("template")
	includeCRDs := flags.set.Bool("include-crds", false, "include the chart's crds/ in the output")
	positional, vals, kubeVersion, err := flags.parseAll(args, 2)
	if err != nil {
		return err
	}
	chart, err := loader.Load(positional[1])
	if err != nil {
		return err
	}
	if chart.Metadata.Type != "" && chart.Metadata.Type != "application" {
		return fmt.Errorf("%s charts are not installable", chart.Metadata.Type)
	}
	if len(chart.Metadata.Dependencies) > 0 {
		// Fetching dependencies needs repositories; these charts have none.
		if err := action.CheckDependencies(chart, chart.Metadata.Dependencies); err != nil {
			return err
		}
	}

	install := action.NewInstall(&action.Configuration{Log: func(string, ...interface{}) {}})
	install.DryRun = true
	install.DryRunOption = "client"
	install.ClientOnly = true
	install.Replace = true // no release storage to check the name against
	install.ReleaseName = positional[0]
	install.Namespace = flags.namespace
	install.IncludeCRDs = *includeCRDs
	install.KubeVersion = kubeVersion
	release, err := install.Run(chart, vals)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, strings.TrimSpace(release.Manifest))
	// Hooks are part of what `helm template` prints, after the manifest.
	for _, hook := range release.Hooks {
		fmt.Fprintf(out, "---\n# Source: %s\n%s\n", hook.Path, hook.Manifest)
	}
	return nil
}

func helmLint(args []string, out io.Writer) error {
	flags := newChartFlags("lint")
	strict := flags.set.Bool("strict", false, "fail on lint warnings")
	positional, vals, kubeVersion, err := flags.parseAll(args, 1)
	if err != nil {
		return err
	}

	lint := action.NewLint()
	lint.Strict = *strict
	lint.Namespace = flags.namespace
	lint.KubeVersion = kubeVersion
	result := lint.Run(positional, vals)

	fmt.Fprintf(out, "==> Linting %s\n", positional[0])
	for _, msg := range result.Messages {
		fmt.Fprintln(out, msg)
	}
	if len(result.Messages) == 0 {
		// Errors that are not messages (the chart could not be loaded at all).
		for _, err := range result.Errors {
			fmt.Fprintf(out, "[ERROR] %v\n", err)
		}
	}
	if len(result.Errors) > 0 {
		var details []string
		for _, err := range result.Errors {
			details = append(details, err.Error())
		}
		return errors.New("1 chart(s) linted, 1 chart(s) failed: " + strings.Join(details, "; "))
	}
	warnings := 0
	for _, msg := range result.Messages {
		if msg.Severity >= support.WarningSev {
			warnings++
		}
	}
	fmt.Fprintf(out, "\n1 chart(s) linted, 0 chart(s) failed (%d warning(s))\n", warnings)
	return nil
}
