# Included by ../Snakefile: a rule file in a subfolder, as attachments keep their layout.
SAMPLES = sorted(config.get("samples", {"a": "one two", "b": "three"}))


rule count:
    output:
        "results/{sample}.count",
    params:
        text=lambda wildcards: config.get("samples", {}).get(wildcards.sample, ""),
    shell:
        "echo counting {wildcards.sample}; "
        "echo 'count {wildcards.sample} on stderr' >&2; "
        "echo {params.text:q} | wc -w | tr -d ' ' > {output}"
