rule count:
    input:
        "resources/{sample}.txt",
    output:
        "results/{sample}.count",
    shell:
        "wc -w < {input} | tr -d ' ' > {output}"


rule summary:
    input:
        expand("results/{sample}.count", sample=config["samples"]),
    output:
        "results/summary.txt",
    params:
        greeting=config["greeting"],
    shell:
        "(echo {params.greeting:q}; grep -H . {input}) > {output}"
